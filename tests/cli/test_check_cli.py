"""`firebreak check` as a user runs it: exit codes, formats, and bad input without tracebacks."""

import json

import pytest

from tests.conftest import ROOT, run_cli

KAKAO = str(ROOT / "examples/kakao-2022.yaml")
LAB = str(ROOT / "examples/firebreak-lab.yaml")


def test_kakao_fails_for_the_loss_of_pangyo():
    r = run_cli("check", KAKAO)
    assert r.returncode == 1, r.stderr
    assert "Loss of pangyo" in r.stdout and "FAIL" in r.stdout
    assert "unrecoverable" in r.stdout and "data-loss" in r.stdout


def test_lab_topology_passes_every_single_site_loss():
    r = run_cli("check", LAB)
    assert r.returncode == 0, r.stdout
    assert "PASS" in r.stdout


def test_lab_topology_fails_pairs_because_etcd_loses_quorum():
    r = run_cli("check", LAB, "--pairs", "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    pairs = [s for s in doc["scenarios"] if len(s["lost"]) == 2]
    assert len(pairs) == 3
    assert all(any(f["kind"] == "quorum-lost" and f["service"] == "etcd" for f in s["findings"]) for s in pairs)


def test_json_contract():
    r = run_cli("check", KAKAO, "--format", "json")
    doc = json.loads(r.stdout)
    assert set(doc) >= {"topology", "scenarios", "summary"}
    assert doc["topology"] == "kakao-2022"
    s = doc["scenarios"][0]
    assert s["lost"] == ["pangyo"]
    assert s["services"]["login"] == "down"
    f = next(f for f in s["findings"] if f["kind"] == "unrecoverable" and f["service"] == "users-db")
    assert set(f) == {"kind", "service", "path", "reason"}  # the lost sites are the scenario's
    assert f["path"][0] == "users-db" and f["reason"]
    assert doc["summary"]["verdict"] == "fail"


@pytest.mark.parametrize("fmt,marker", [("md", "# Readiness: kakao-2022"), ("html", "<table class=\"matrix\">")])
def test_shareable_formats_to_file(tmp_path, fmt, marker):
    out = tmp_path / f"report.{fmt}"
    r = run_cli("check", KAKAO, "--format", fmt, "--output", str(out))
    assert r.returncode == 1
    text = out.read_text()
    assert marker in text and "pangyo" in text
    if fmt == "html":
        assert 'class="down"' in text and "<script src" not in text and "<link" not in text  # self-contained


def test_text_to_file_has_no_colour_codes(tmp_path):
    out = tmp_path / "r.txt"
    assert run_cli("check", LAB, "--output", str(out)).returncode == 0
    assert "\x1b[" not in out.read_text() and "PASS" in out.read_text()


BAD_CASES = [
    ("unknown dependency", "name: t\nsites: [a]\nservices:\n  web: {replicas: {a: 1}, depends_on: [user-db]}\n  users-db: {replicas: {a: 1}}\n",
     ["topo.yaml: services.web.depends_on[0]: unknown service 'user-db' (did you mean 'users-db'?)"]),
    ("yaml syntax", "name: t\nsites: [a\n", ["topo.yaml: line "]),
    ("several problems, one line each",
     "name: t\nsites: [a]\nservices:\n  web: {replicas: {b: 1}, needs: -2}\n",
     ["topo.yaml: services.web.needs: must be 1 or more, got -2"]),
    ("cycle", "name: t\nsites: [a]\nservices:\n  x: {replicas: {a: 1}, depends_on: [y]}\n  y: {replicas: {a: 1}, depends_on: [x]}\n",
     ["dependency cycle: "]),
]


@pytest.mark.parametrize("what,text,expected", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_one_line_per_problem(tmp_path, what, text, expected):
    (tmp_path / "topo.yaml").write_text(text)
    r = run_cli("check", "topo.yaml", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith("topo.yaml: ") for line in lines), lines
    for e in expected:
        assert any(e in line for line in lines), lines


def test_missing_file_and_bad_flags_exit_2(tmp_path):
    r = run_cli("check", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "file not found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("check", LAB, "--format", "pdf")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("check", LAB, "--output", str(tmp_path / "no/such/dir/r.html"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_bad_output_changes_nothing(tmp_path):
    (tmp_path / "topo.yaml").write_text("name: t\nsites: [a]\nservices: {x: {replicas: {q: 1}}}\n")
    out = tmp_path / "report.json"
    r = run_cli("check", "topo.yaml", "--format", "json", "--output", str(out), cwd=tmp_path)
    assert r.returncode == 2 and not out.exists()


# -- check --live ---------------------------------------------------------------------------------

def _serve(doc: dict, posts: list | None = None):
    """A console (the real one is exercised by tests/lab): /api/estate from memory; every action
    POST recorded in `posts` and answered as done."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, doc) if self.path == "/api/estate" else self._send(404, {})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            (posts if posts is not None else []).append((self.path, body, self.headers.get("Authorization")))
            self._send(200, {"ok": True, "action": "switchover", **body})

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_check_live_against_a_file_lists_drift_and_exits_1_only_when_there_is_some():
    import copy

    from firebreak.resources import example
    from tests.unit.test_live_estate import running_as_declared

    doc = running_as_declared()
    server, url = _serve(doc)
    try:
        r = run_cli("check", "--live", url, "--against", str(example("estate.yaml")), "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["drift"] == [] and json.loads(r.stdout)["summary"]["verdict"] == "pass"
        moved = copy.deepcopy(doc)
        moved["clusters"]["users-db"]["primary_site"] = "ansan"
        moved["clusters"]["users-db"]["members"]["ansan"]["state"] = "running"
        server.shutdown()
        server, url = _serve(moved)
        r = run_cli("check", "--live", url, "--against", str(example("estate.yaml")))
        assert r.returncode == 1
        assert "users-db: primary: declared pangyo, running ansan" in r.stdout
    finally:
        server.shutdown()


@pytest.mark.parametrize("args,words", [
    (["check", "--live", "http://127.0.0.1:1"], "--live: cannot reach the console"),
    (["check"], "FILE: missing"),
    (["check", "examples/estate.yaml", "--live", "http://127.0.0.1:1"], "not both"),
    (["check", "--against", "examples/estate.yaml"], "--against: only with --live"),
])
def test_check_live_refuses_what_it_cannot_do_with_exit_2(args, words):
    r = run_cli(*args, cwd=ROOT)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


# -- ops rebalance ---------------------------------------------------------------------------------

def test_rebalance_switches_over_each_cluster_away_from_its_declared_site_and_only_those():
    from firebreak.resources import example
    from tests.unit.test_live_estate import running_as_declared

    doc = running_as_declared()
    users = doc["clusters"]["users-db"]
    users["members"]["pangyo"]["state"], users["members"]["ansan"]["state"] = "streaming", "running"
    users["primary_site"] = "ansan"
    posts: list = []
    server, url = _serve(doc, posts)
    base = ["ops", "rebalance", "--against", str(example("estate.yaml")), "--console", url, "--token", "x.y"]
    try:
        r = run_cli(*base, "--dry-run", "--format", "json")
        assert r.returncode == 0 and posts == [], r.stderr
        assert [m["cluster"] for m in json.loads(r.stdout)["plan"]] == ["users-db"]
        r = run_cli(*base)
        assert r.returncode == 2 and "pass --yes" in r.stderr and posts == []
        r = run_cli(*base, "--yes", "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["moved"] == ["users-db"]
        assert posts == [("/api/actions/switchover", {"to": "pangyo", "cluster": "users-db", "make_sync": True},
                          "Bearer x.y")]
    finally:
        server.shutdown()


def test_rebalance_refuses_a_bad_topology_with_exit_2(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("sites: [a]\nservices: {x: {kind: nonsense}}\n")
    r = run_cli("ops", "rebalance", "--against", str(bad), "--console", "http://127.0.0.1:1", "--token", "x.y")
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
