"""`firebreak ops` on real hosts: an ops config lists every site's console and the next is tried
when one does not answer; the token from a private file; the environment variables in --help."""

import json
import os
import subprocess

import pytest

from tests.cli.test_check_cli import _serve
from tests.conftest import FIREBREAK

DEAD = "http://127.0.0.1:9"   # nothing listens on the discard port: connection refused


def run(*args, env=None, home=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FIREBREAK_OPS")}
    full.update(COLUMNS="200", NO_COLOR="1", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    full.update(env or {})
    return subprocess.run([FIREBREAK, *args], capture_output=True, text=True, timeout=60, env=full,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def console():
    posts: list = []
    server, url = _serve({"sites": {}}, posts)
    yield url, posts
    server.shutdown()


def _token_file(tmp_path, mode=0o600):
    p = tmp_path / "token"
    p.write_text("alice.s3cret\n")
    p.chmod(mode)
    return p


def _config(tmp_path, consoles, **extra):
    p = tmp_path / "ops.yml"
    lines = ["consoles:"] + [f"  {site}: {url}" for site, url in consoles.items()]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_the_next_console_is_tried_when_one_does_not_answer(tmp_path, console):
    url, posts = console
    cfg = _config(tmp_path, {"gwangju": DEAD, "daejeon": url, "busan": DEAD}, token_file=_token_file(tmp_path))
    r = run("ops", "freeze", "--format", "json", env={"FIREBREAK_OPS_CONFIG": str(cfg)}, home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["via"] == "daejeon"
    assert posts == [("/api/actions/freeze", {}, "Bearer alice.s3cret")]


def test_the_default_config_file_is_read(tmp_path, console):
    url, posts = console
    (tmp_path / ".config" / "firebreak").mkdir(parents=True)
    cfg = _config(tmp_path / ".config" / "firebreak", {"gwangju": url})
    assert cfg == tmp_path / ".config" / "firebreak" / "ops.yml"
    r = run("ops", "unfreeze", "--token-file", str(_token_file(tmp_path)), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unfreeze via gwangju" in r.stdout and posts[0][2] == "Bearer alice.s3cret"


def test_site_picks_its_console_from_the_config_and_a_typo_is_named(tmp_path, console):
    url, posts = console
    cfg = _config(tmp_path, {"gwangju": DEAD, "daejeon": url})
    env = {"FIREBREAK_OPS_CONFIG": str(cfg), "FIREBREAK_OPS_TOKEN": "bob.x"}
    r = run("ops", "release", "v2", "--site", "daejeon", env=env, home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert posts == [("/api/actions/release", {"version": "v2", "notes": ""}, "Bearer bob.x")]
    r = run("ops", "release", "v2", "--site", "daejon", env=env, home=tmp_path)
    assert r.returncode == 2 and "did you mean 'daejeon'" in r.stderr


def test_every_console_down_is_a_failure_naming_each(tmp_path):
    cfg = _config(tmp_path, {"gwangju": DEAD, "daejeon": "http://127.0.0.1:7"})
    r = run("ops", "freeze", "--token", "a.b", env={"FIREBREAK_OPS_CONFIG": str(cfg)}, home=tmp_path)
    assert r.returncode == 1 and "freeze failed everywhere" in r.stderr
    assert "gwangju:" in r.stderr and "daejeon:" in r.stderr


def test_a_token_file_others_can_read_is_refused(tmp_path, console):
    url, posts = console
    r = run("ops", "freeze", "--console", url, "--token-file", str(_token_file(tmp_path, 0o644)), home=tmp_path)
    assert r.returncode == 2 and "--token-file" in r.stderr and "chmod 600" in r.stderr
    assert posts == []


@pytest.mark.parametrize("text, needle", [
    ("consoles: {gwangju: 10.10.0.11:8090}\n", "consoles.gwangju: '10.10.0.11:8090' is not an http(s) URL"),
    ("consoles: {gwangju: http://x:1}\ntoken: abc\n", "token: unknown field (did you mean 'token_file'?)"),
    ("consoles: {}\n", "consoles: must not be empty"),
])
def test_a_bad_config_is_refused_with_its_field_named(tmp_path, text, needle):
    cfg = tmp_path / "ops.yml"
    cfg.write_text(text)
    r = run("ops", "freeze", "--token", "a.b", env={"FIREBREAK_OPS_CONFIG": str(cfg)}, home=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{cfg}: {needle}" in r.stderr, r.stderr


def test_a_named_config_that_is_missing_is_refused(tmp_path):
    r = run("ops", "--config", str(tmp_path / "nope.yml"), "status", home=tmp_path)
    assert r.returncode == 2 and "nope.yml: file not found" in r.stderr


def test_rebalance_reads_the_estate_from_the_first_console_that_answers(tmp_path):
    from firebreak.resources import example
    from tests.unit.test_live_estate import running_as_declared

    server, url = _serve(running_as_declared(), [])
    try:
        cfg = _config(tmp_path, {"gwangju": DEAD, "daejeon": url})
        r = run("ops", "rebalance", "--against", str(example("estate.yaml")), "--dry-run", "--format", "json",
                "--token", "a.b", env={"FIREBREAK_OPS_CONFIG": str(cfg)}, home=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["via"] == "daejeon"
    finally:
        server.shutdown()


def test_help_shows_the_environment_variables(tmp_path):
    r = run("ops", "freeze", "--help", home=tmp_path)
    for var in ("FIREBREAK_OPS_TOKEN", "FIREBREAK_OPS_TOKEN_FILE", "FIREBREAK_OPS_CONSOLE"):
        assert f"env var: {var}]" in r.stdout, var
    assert "env var: FIREBREAK_OPS_CONFIG]" in run("ops", "--help", home=tmp_path).stdout
