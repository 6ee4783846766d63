"""`firebreak pki` as an operator runs it after `deploy render`: init, issue, check, renew, rotate
and a CA rollover on real files; bad input refused with the field named, exit 2, nothing written."""

import json
import textwrap

import pytest

from tests.conftest import run_cli
from tests.unit.test_deploy_inventory import CONTRACT

SETTINGS = "settings:\n  etcd: {admin_on_agents: false}\n"


@pytest.fixture
def rendered(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(textwrap.dedent(CONTRACT).lstrip("\n") + SETTINGS)
    out = tmp_path / "out"
    r = run_cli("deploy", "render", "--inventory", str(inv), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return inv, out, tmp_path / "pki"


def _files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_init_issue_check_and_again_changes_nothing(rendered):
    inv, out, pki = rendered
    r = run_cli("pki", "init", "--dir", str(pki), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["written"]) == 6
    r = run_cli("pki", "issue", "--inventory", str(inv), "--dir", str(pki), "--out", str(out), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "gj-db1:/etc/firebreak/etcd/agent-gwangju/client.pem" in doc["issued"]
    # The renderer's access file for the agent points at the certificate and key pki wrote.
    access = json.loads((out / "gj-db1/etc/firebreak/etcd/agent-gwangju/access.json").read_text())
    for k in ("ca", "cert", "key"):
        assert (out / "gj-db1" / access[k].lstrip("/")).is_file(), access[k]
    r = run_cli("pki", "check", "--inventory", str(inv), "--dir", str(pki), "--out", str(out))
    assert r.returncode == 0 and "Nothing is due" in r.stdout
    r = run_cli("pki", "check", "--inventory", str(inv), "--dir", str(pki), "--out", str(out), "--within", "400",
                "--format", "json")
    assert r.returncode == 1 and "in 364 day(s)" in json.loads(r.stdout)["due"]["gj-web1:/etc/firebreak/pki/door.pem"]
    before = _files(out) | _files(pki)
    for cmd in (("init", "--dir", str(pki)),
                ("issue", "--inventory", str(inv), "--dir", str(pki), "--out", str(out)),
                ("renew", "--inventory", str(inv), "--dir", str(pki), "--out", str(out))):
        r = run_cli("pki", *cmd)
        assert r.returncode == 0, r.stderr
    assert _files(out) | _files(pki) == before


def test_rotate_and_a_rollover_step_by_step(rendered):
    inv, out, pki = rendered
    base = ("--inventory", str(inv), "--dir", str(pki), "--out", str(out))
    assert run_cli("pki", "init", "--dir", str(pki)).returncode == 0
    assert run_cli("pki", "issue", *base).returncode == 0
    key = out / "gj-db1/etc/firebreak/pki/etcd-member-key.pem"
    old_key = key.read_bytes()
    r = run_cli("pki", "rotate", *base, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert key.read_bytes() != old_key and all(v == "rotated" for v in json.loads(r.stdout)["issued"].values())
    r = run_cli("pki", "rotate", *base, "--ca", "peer")
    assert r.returncode == 0, r.stderr
    assert (out / "gj-db1/etc/firebreak/pki/peer-ca.pem").read_text().count("BEGIN CERTIFICATE") == 2
    r = run_cli("pki", "check", *base)
    assert r.returncode == 1 and "signed by another CA" in r.stdout and "rollover of the peer CA" in r.stdout
    r = run_cli("pki", "rotate", *base, "--retire-ca", "peer")
    assert r.returncode == 1 and "still signed by the retiring peer CA" in r.stderr
    assert run_cli("pki", "renew", *base).returncode == 0
    r = run_cli("pki", "rotate", *base, "--retire-ca", "peer")
    assert r.returncode == 0, r.stderr
    assert (out / "gj-db1/etc/firebreak/pki/peer-ca.pem").read_text().count("BEGIN CERTIFICATE") == 1
    assert run_cli("pki", "check", *base).returncode == 0


BAD = [
    ("days", "issue", {}, ["--days", "0"], "--days: 0 is below 1"),
    ("within", "renew", {}, ["--within", "-1"], "--within: -1 is below 0"),
    ("no CA yet", "issue", {"--dir": "nowhere"}, [], "no client CA"),
    ("root on agents", "issue", {"--inventory": "root.yml"}, [], "settings.etcd.admin_on_agents"),
    ("bad inventory", "issue", {"--inventory": "typo.yml"}, [], "roles"),
    ("no secrets", "issue", {}, ["--secrets", "none.yml"], "--secrets"),
    ("both steps", "rotate", {}, ["--ca", "client", "--retire-ca", "client"], "not both"),
    ("no rollover", "rotate", {}, ["--retire-ca", "client"], "no rollover of the client CA"),
]


@pytest.fixture
def initialised(rendered):
    inv, out, pki = rendered
    tmp = inv.parent
    assert run_cli("pki", "init", "--dir", str(pki)).returncode == 0
    (tmp / "root.yml").write_text(textwrap.dedent(CONTRACT).lstrip("\n") + SETTINGS.replace("false", "true"))
    (tmp / "typo.yml").write_text(textwrap.dedent(CONTRACT).lstrip("\n").replace("db-door]", "db-dor]", 1) + SETTINGS)
    return rendered


@pytest.mark.parametrize("case,cmd,flags,extra,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exit_2_field_named_nothing_written(initialised, case, cmd, flags, extra, message):
    inv, out, pki = initialised
    tmp = inv.parent
    given = {"--inventory": str(inv), "--dir": str(pki), "--out": str(out),
             **{k: str(tmp / v) for k, v in flags.items()}}
    extra = [str(tmp / a) if a.endswith(".yml") else a for a in extra]
    before = _files(tmp)
    r = run_cli("pki", cmd, *[x for kv in given.items() for x in kv], *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
    assert _files(tmp) == before
