"""`firebreak deploy render` as an operator runs it: files with their modes, secrets made once and
kept, bad inventories refused with one line naming the field, exit 2, nothing written."""

import json
import stat
import textwrap

import pytest

from tests.conftest import ROOT, run_cli
from tests.unit.test_deploy_inventory import CONTRACT

EXAMPLE = str(ROOT / "deploy" / "inventory.example.yml")


def _mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_render_writes_every_host_with_modes_and_keeps_its_secrets(tmp_path):
    out = tmp_path / "out"
    r = run_cli("deploy", "render", "--inventory", EXAMPLE, "--out", str(out), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["secrets_made"] is True and set(doc["hosts"]) == {"gj-1", "dj-1", "bs-1"}
    assert "/etc/systemd/system/firebreak-agent.service" in doc["hosts"]["gj-1"]["files"]
    assert _mode(out / "secrets.yml") == 0o600
    assert _mode(out / "gj-1/etc/firebreak/agent.yml") == 0o640  # no secret in it: they are in secrets/
    assert _mode(out / "gj-1/etc/firebreak/secrets/agent-patroni-password") == 0o600
    assert _mode(out / "gj-1/etc/firebreak/secrets/patroni.env") == 0o600
    assert _mode(out / "gj-1/etc/systemd/system/firebreak-etcd.service") == 0o644
    assert (out / "dj-1/etc/firebreak/haproxy.cfg").is_file()
    assert (out / "bs-1/etc/firebreak/patroni/firebreak/patroni.yml").is_file()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    # Again: the same secrets, the same files.
    r = run_cli("deploy", "render", "--inventory", EXAMPLE, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "New secrets" not in r.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_render_text_lists_each_hosts_units(tmp_path):
    r = run_cli("deploy", "render", "--inventory", EXAMPLE, "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "gj-1 (gwangju): firebreak-agent.service" in r.stdout and "New secrets in" in r.stdout


@pytest.mark.parametrize("old, new, line", [
    ("roles: [etcd, postgres, agent, db-door]}\n      gj-web1",
     "roles: [etcd, postgress, agent, db-door]}\n      gj-web1",
     "sites.gwangju.hosts.gj-db1.roles[1]: must be one of etcd, postgres, agent, door, db-door, claims; got "
     "'postgress' (did you mean 'postgres'?)"),
    ("dj-web1: {address: 10.20.0.21,", "dj-web1: {address: 10.10.0.21,",
     "sites.daejeon.hosts.dj-web1.address: 10.10.0.21 is also the address of host 'gj-web1'"),
    ("bs-db1:  {address: 10.30.0.11, roles: [etcd, postgres,", "bs-db1:  {address: 10.30.0.11, roles: [postgres,",
     "sites.busan.hosts: site 'busan' has no etcd host"),
])
def test_bad_inventory_one_line_exit_2_nothing_written(tmp_path, old, new, line):
    inv = tmp_path / "inventory.yml"
    text = textwrap.dedent(CONTRACT).lstrip("\n")
    assert old in text
    inv.write_text(text.replace(old, new, 1))
    out = tmp_path / "out"
    r = run_cli("deploy", "render", "--inventory", str(inv), "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{inv}: {line}"), lines
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_a_named_secrets_file_must_exist_and_be_private(tmp_path):
    out = tmp_path / "out"
    r = run_cli("deploy", "render", "--inventory", EXAMPLE, "--out", str(out), "--secrets", str(tmp_path / "s.yml"))
    assert r.returncode == 2 and "--secrets" in r.stderr and "file not found" in r.stderr
    assert not out.exists()
    assert run_cli("deploy", "render", "--inventory", EXAMPLE, "--out", str(out)).returncode == 0
    (out / "secrets.yml").chmod(0o644)
    r = run_cli("deploy", "render", "--inventory", EXAMPLE, "--out", str(out))
    assert r.returncode == 2 and "chmod 600" in r.stderr


def test_version():
    from firebreak import __version__

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout == f"firebreak {__version__}\n"
