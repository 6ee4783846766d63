"""A bad agent configuration stops `firebreak agent` before anything starts: exit 2, the field
named, no traceback (issue 29: an endpoint without a port used to surface as a ValueError from
the first loop that dialled it)."""

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
# One host's agent.yml as `firebreak deploy render` writes it (tests/unit/test_deploy_render.py
# keeps it equal to the renderer's output).
EXAMPLE = (ROOT / "deploy" / "example" / "gj-1" / "etc" / "firebreak" / "agent.yml").read_text()
SECRET_FILES = {"patroni_password_file: /etc/firebreak/secrets/agent-patroni-password": "patroni-password",
                "app_admin_token_file: /etc/firebreak/secrets/agent-app-admin-token": "app-admin-token"}

CASES = [
    ("a site's endpoint without a port", ("patroni: http://10.20.0.11:8008", "patroni: http://10.20.0.11"),
     "bad.yml: sites.daejeon.patroni: 'http://10.20.0.11' needs a port, like http://10.0.0.5:8080"),
    ("an etcd URL without a scheme", ("- https://10.10.0.11:2379", "- 10.10.0.11:2379"),
     "bad.yml: etcd[0]: '10.10.0.11:2379' needs http:// or https:// and a host"),
    ("a port that is no number", ("app: http://10.10.0.11:8080", "app: http://10.10.0.11:80x0"),
     "bad.yml: sites.gwangju.app: 'http://10.10.0.11:80x0' is not a URL"),
    ("a database door admin that is no socket",
     ("admin: unix//run/firebreak-db-door/admin.sock", "admin: http://127.0.0.1:9999"),
     "bad.yml: db_door.admin: 'http://127.0.0.1:9999' must be a unix socket (unix//path)"),
    ("a listen address without a port", ("listen: 10.10.0.11:8090", "listen: 10.10.0.11\n"),
     "bad.yml: listen: '10.10.0.11' needs an address and a port"),
]


def example_here(tmp_path: Path, mode: int = 0o600) -> str:
    """The example with its secret files beside it (paths relative to agent.yml), `mode` each."""
    text = EXAMPLE
    for line, name in SECRET_FILES.items():
        assert line in text
        text = text.replace(line, line.split(":")[0] + ": " + name)
        (tmp_path / name).write_text(f"{name}-value\n")
        (tmp_path / name).chmod(mode)
    return text


@pytest.mark.parametrize("what,change,expected", CASES, ids=[c[0] for c in CASES])
def test_a_bad_endpoint_exits_2_naming_the_field(tmp_path, what, change, expected):
    old, new = change
    text = example_here(tmp_path)
    assert old in text
    (tmp_path / "bad.yml").write_text(text.replace(old, new, 1))
    r = run_cli("agent", "--config", "bad.yml", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert any(line.startswith(expected) for line in r.stderr.splitlines()), r.stderr


def test_the_example_configuration_loads_its_secrets_from_their_files(tmp_path):
    from firebreak.control.config import load_agent_config

    (tmp_path / "agent.yml").write_text(example_here(tmp_path))
    cfg = load_agent_config(tmp_path / "agent.yml")
    assert cfg.sites["daejeon"].patroni == "http://10.20.0.11:8008"  # kept as written: paths are appended to it
    assert (cfg.patroni_password, cfg.app_admin_token) == ("patroni-password-value", "app-admin-token-value")
    shipped = yaml.safe_load(EXAMPLE)  # the shipped file holds no secret, only where each is
    assert not {"patroni_password", "app_admin_token"} & set(shipped)


@pytest.mark.parametrize("what,setup,expected", [
    ("readable by others", lambda d: (d / "patroni-password").chmod(0o640),
     "agent.yml: patroni_password_file: patroni-password: mode 0640 lets other users read this secret"),
    ("missing", lambda d: (d / "app-admin-token").unlink(),
     "agent.yml: app_admin_token_file: app-admin-token: cannot read it"),
    ("empty", lambda d: (d / "app-admin-token").write_text("\n"),
     "agent.yml: app_admin_token_file: app-admin-token is empty"),
], ids=["readable by others", "missing", "empty"])
def test_a_secret_file_that_is_not_private_or_not_there_exits_2_naming_the_field(tmp_path, what, setup, expected):
    (tmp_path / "agent.yml").write_text(example_here(tmp_path))
    setup(tmp_path)
    r = run_cli("agent", "--config", "agent.yml", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert any(line.startswith(expected.format(d=tmp_path)) for line in r.stderr.splitlines()), r.stderr


def test_a_secret_inline_and_in_a_file_is_refused(tmp_path):
    text = example_here(tmp_path).replace("patroni_user: firebreak\n", "patroni_user: firebreak\npatroni_password: x\n")
    (tmp_path / "agent.yml").write_text(text)
    r = run_cli("agent", "--config", "agent.yml", cwd=tmp_path)
    assert r.returncode == 2 and "give patroni_password or patroni_password_file, not both" in r.stderr, r.stderr


@pytest.mark.parametrize("detector,expected", [
    ("detector: {probe_interval: 0.2, probe_timeout: 0.3}", "bad.yml: detector.probe_timeout: 0.3 s is above the probe interval"),
    ("detector: {probe_interval: 0.2, window: 0.3}", "bad.yml: detector.window: 0.3 s is shorter than two probe intervals"),
    ("detector: {window: 1.0, fresh: 0.8}", "bad.yml: detector.fresh: 0.8 s is shorter than the window"),
], ids=["timeout above interval", "window under two intervals", "freshness under the window"])
def test_detector_settings_it_cannot_honour_exit_2_naming_the_field(tmp_path, detector, expected):
    text = example_here(tmp_path)
    (tmp_path / "bad.yml").write_text(text + "\n" + detector + "\n")
    r = run_cli("agent", "--config", "bad.yml", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert any(line.startswith(expected) for line in r.stderr.splitlines()), r.stderr
