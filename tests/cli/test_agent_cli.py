"""A bad agent configuration stops `firebreak agent` before anything starts: exit 2, the field
named, no traceback (issue 29: an endpoint without a port used to surface as a ValueError from
the first loop that dialled it)."""

from pathlib import Path

import pytest

from tests.conftest import run_cli

EXAMPLE = (Path(__file__).resolve().parents[2] / "deploy" / "agent.example.yml").read_text()

CASES = [
    ("a site's endpoint without a port", ("patroni: http://10.2.0.11:8008", "patroni: http://10.2.0.11"),
     "bad.yml: sites.ansan.patroni: 'http://10.2.0.11' needs a port, like http://10.0.0.5:8080"),
    ("an etcd URL without a scheme", ("etcd: [http://10.1.0.10:2379", "etcd: [10.1.0.10:2379"),
     "bad.yml: etcd[0]: '10.1.0.10:2379' needs http:// or https:// and a host"),
    ("a port that is no number", ("app: http://10.1.0.12:8080", "app: http://10.1.0.12:80x0"),
     "bad.yml: sites.pangyo.app: 'http://10.1.0.12:80x0' is not a URL"),
    ("a database door admin that is no socket",
     ("admin: unix//run/haproxy/db-door.sock", "admin: http://127.0.0.1:9999"),
     "bad.yml: db_door.admin: 'http://127.0.0.1:9999' must be a unix socket (unix//path)"),
    ("a listen address without a port", ("listen: 10.1.0.20:8090", "listen: 10.1.0.20"),
     "bad.yml: listen: '10.1.0.20' needs an address and a port"),
]


@pytest.mark.parametrize("what,change,expected", CASES, ids=[c[0] for c in CASES])
def test_a_bad_endpoint_exits_2_naming_the_field(tmp_path, what, change, expected):
    old, new = change
    assert old in EXAMPLE
    (tmp_path / "bad.yml").write_text(EXAMPLE.replace(old, new, 1))
    r = run_cli("agent", "--config", "bad.yml", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert any(line.startswith(expected) for line in r.stderr.splitlines()), r.stderr


def test_the_example_configuration_loads():
    from firebreak.control.config import load_agent_config

    cfg = load_agent_config(Path(__file__).resolve().parents[2] / "deploy" / "agent.example.yml")
    assert cfg.sites["ansan"].patroni == "http://10.2.0.11:8008"  # kept as written: paths are appended to it
    assert cfg.sites["ansan"].door == "https://ansan.claims.example"  # a public URL needs no port
