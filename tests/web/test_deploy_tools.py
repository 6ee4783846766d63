"""Every rendered file checked by the tool its own project ships: `systemd-analyze verify` for each
unit, `haproxy -c`, `caddy validate`, `patroni --validate-config`, and etcd itself, started from
its rendered configuration file as a three-member cluster that elects a leader; `promtool check
rules` and `promtool test rules` for the alert rules in deploy/prometheus/.

The inventory uses loopback addresses (127.0.9x.1) and its binaries point at the ones on this
machine, so the tools check the real thing: the files a host gets, moved under a temporary root
only where a path must exist (certificates, data directories).

As root (CI) a missing tool fails the test; a normal user who cannot install system packages
is told which one is missing and why the test was skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from firebreak.deploy.inventory import load_inventory
from firebreak.deploy.render import render
from firebreak.deploy.secrets import make_secrets
from firebreak.lab import pki
from firebreak.lab.runtime import etcd_binary, pg_bin_dir
from tests.conftest import ROOT

VENV = Path(sys.executable).parent.parent
ADDRESSES = {"gwangju": "127.0.91.1", "daejeon": "127.0.92.1", "busan": "127.0.93.1"}


def tool(name: str, *candidates: str) -> str:
    """A system tool's path; as root its absence fails (setup.sh installs it), otherwise skips."""
    found = shutil.which(name) or next((c for c in candidates if Path(c).exists()), None)
    if found:
        return found
    if os.geteuid() == 0:
        pytest.fail(f"{name} is missing; `make setup` (scripts/setup.sh) installs it as root")
    pytest.skip(f"{name} is not installed and this user cannot install it (scripts/setup.sh does, as root)")


def _free_port_base() -> int:
    """A port p such that p..p+40 are free on every test address (ports are per address, and the
    loopback addresses above are used by nothing else)."""
    for base in range(24000, 60000, 50):
        try:
            for addr in ADDRESSES.values():
                for p in range(base, base + 41):
                    with socket.socket() as s:
                        s.bind((addr, p))
            return base
        except OSError:
            continue
    pytest.fail("no free ports on the test's loopback addresses")


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    """Rendered files of a three-site estate (one host per site, every role), with certificates
    for it in a temporary root."""
    root = tmp_path_factory.mktemp("host-root")
    base = _free_port_base()
    ports = dict(etcd=base, etcd_peer=base + 1, etcd_metrics=base + 2, postgres=base + 3, patroni=base + 4,
                 db_door=base + 5, db_door_ro=base + 6, door=base + 7, door_tls=base + 8, console=base + 9,
                 claims=base + 10)
    inv_doc = {
        "sites": {site: {"hosts": {f"{site[:2]}-1": {"address": addr, "roles": [
            "etcd", "postgres", "agent", "door", "db-door", "claims"]}}} for site, addr in ADDRESSES.items()},
        "settings": {"ports": ports, "binaries": {
            "venv": str(VENV), "etcd": etcd_binary(), "patroni": str(VENV / "bin" / "patroni"),
            "pg_bin_dir": pg_bin_dir(), "haproxy": tool("haproxy", "/usr/sbin/haproxy"),
            "caddy": str(VENV / "bin" / "caddy")}},
    }
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inv_doc))
    inv = load_inventory(path)
    secrets = make_secrets(inv.names)
    files = render(inv, secrets)

    # Certificates where the rendered files expect them, under the temporary root.
    ca = pki.make_ca("firebreak test CA")
    peer_ca = pki.make_ca("firebreak test peer CA")  # the raft port trusts only this one
    tokens = pki.token_keys()
    for host in inv.hosts:
        d = root / host.name / "etc/firebreak/pki"
        d.mkdir(parents=True)
        (d / "ca.pem").write_bytes(ca.cert_pem)
        (d / "peer-ca.pem").write_bytes(peer_ca.cert_pem)
        pki.write(pki.issue(ca, host.site, ips=[host.address], server=True, client=False), d / "etcd-member.pem",
                  d / "etcd-member-key.pem")
        # 127.0.0.1 too: on loopback, peers dial from it, and etcd checks a peer's certificate
        # against the address it came from (a real host dials from its own address)
        pki.write(pki.issue(peer_ca, host.site, ips=[host.address, "127.0.0.1"], server=True), d / "etcd-peer.pem",
                  d / "etcd-peer-key.pem")
        pki.write(tokens, d / "etcd-token.pem", d / "etcd-token-key.pem")
        pki.write(pki.issue(ca, f"door.{host.site}", ips=[host.address], server=True, client=False),
                  d / "door.pem", d / "door-key.pem")
    for rel, f in files.items():
        host = rel.split("/", 1)[0]
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_relocate(f.content, root / host))
    return {"root": root, "inv": inv, "files": files, "secrets": secrets, "ports": ports}


def _relocate(text: str, host_root: Path) -> str:
    """Paths that must exist for a check, moved under the host's temporary root."""
    for prefix in ("/etc/firebreak/", "/var/lib/firebreak-", "/run/firebreak-", "/var/log/firebreak-"):
        text = text.replace(prefix, f"{host_root}{prefix}")
    return text


def _units(estate) -> list[str]:
    return [rel for rel in estate["files"] if "/etc/systemd/system/" in rel]


def test_every_unit_passes_systemd_analyze_verify(estate, tmp_path):
    analyze = tool("systemd-analyze", "/usr/bin/systemd-analyze")
    units = _units(estate)
    assert len(units) == 18
    for rel in units:
        # verify reads the unit as rendered, not relocated: it checks keys, values and binaries
        unit = tmp_path / rel.rsplit("/", 1)[1]
        unit.write_text(estate["files"][rel].content)
        r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 0 and not out, f"{rel}:\n{out}"


def test_a_broken_unit_is_caught_by_the_same_check(tmp_path):
    """The check above is not vacuous: a misspelt key and a missing binary are reported."""
    analyze = tool("systemd-analyze", "/usr/bin/systemd-analyze")
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/bin/x\nLimitNOFIL=1\n")
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "LimitNOFIL" in r.stderr and "/nonexistent/bin/x" in r.stderr


def test_haproxy_accepts_every_database_door(estate):
    haproxy = tool("haproxy", "/usr/sbin/haproxy")
    for host in estate["inv"].hosts:
        cfg = estate["root"] / host.name / "etc/firebreak/haproxy.cfg"
        r = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "mode 660 level admin" in cfg.read_text()


def test_caddy_validates_every_front_door(estate):
    caddy = str(VENV / "bin" / "caddy")
    for host in estate["inv"].hosts:
        cfg = estate["root"] / host.name / "etc/firebreak/caddy.json"
        env = dict(os.environ, XDG_DATA_HOME=str(estate["root"] / "caddy-data"),
                   XDG_CONFIG_HOME=str(estate["root"] / "caddy-data"))
        r = subprocess.run([caddy, "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "Valid configuration" in r.stdout + r.stderr


def test_patroni_validates_every_member_with_its_environment_file(estate, etcd_cluster):
    """Patroni's own validator (it also dials the etcd member it is given: the cluster above)."""
    for host in estate["inv"].hosts:
        hroot = estate["root"] / host.name
        cfg = hroot / "etc/firebreak/patroni/firebreak/patroni.yml"
        (hroot / "var/lib/firebreak-postgresql/firebreak").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATRONI_")}
        env.update(_read_env(hroot / "etc/firebreak/secrets/patroni.env"))
        r = subprocess.run([str(VENV / "bin" / "patroni"), "--validate-config", "--print", str(cfg)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        effective = yaml.safe_load(r.stdout)
        # the passwords come from the EnvironmentFile, merged over the file's users
        assert effective["etcd3"]["password"] == estate["secrets"].etcd["patroni"]
        assert effective["etcd3"]["username"] == "patroni"
        assert effective["restapi"]["authentication"] == {"username": "firebreak",
                                                          "password": estate["secrets"].patroni_api}
        assert effective["postgresql"]["authentication"]["superuser"]["password"] == estate["secrets"].superuser
        assert effective["bootstrap"]["dcs"]["failsafe_mode"] is True


def _read_env(path: Path) -> dict[str, str]:
    """An EnvironmentFile as systemd reads the rendered one (KEY="value", backslash escapes)."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v[1:-1].encode().decode("unicode_escape") if v.startswith('"') else v
    return out


@pytest.fixture(scope="module")
def etcd_cluster(estate):
    """etcd's own parsing of every setting (TLS, signed tokens, pre-vote, quota, compaction): three
    members started with `etcd --config-file` as the units' ExecStart says, until each answers
    healthy (a leader elected) on the plain metrics listener the agents probe."""
    inv, root, ports = estate["inv"], estate["root"], estate["ports"]
    procs = []
    try:
        for host in inv.hosts:
            hroot = root / host.name
            (hroot / "var/lib/firebreak-etcd").mkdir(parents=True, exist_ok=True, mode=0o700)
            unit = (hroot / "etc/systemd/system/firebreak-etcd.service").read_text()
            argv = next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1].split()
            assert argv[1:] == ["--config-file", f"{hroot}/etc/firebreak/etcd.yml"]
            log = open(hroot / "etcd.log", "wb")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 30
        healthy: set[str] = set()
        while time.monotonic() < deadline and len(healthy) < 3:
            for p in procs:
                assert p.poll() is None, _etcd_logs(root, inv)
            for host in inv.hosts:
                try:
                    r = httpx.get(f"http://{host.address}:{ports['etcd_metrics']}/health", timeout=1)
                    if r.status_code == 200 and r.json().get("health") == "true":
                        healthy.add(host.name)
                except (httpx.HTTPError, ValueError):
                    pass
            time.sleep(0.3)
        assert len(healthy) == 3, f"healthy: {sorted(healthy)}\n" + _etcd_logs(root, inv)
        yield healthy
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def test_etcd_starts_from_its_rendered_files_and_elects_a_leader(estate, etcd_cluster):
    inv, ports = estate["inv"], estate["ports"]
    assert etcd_cluster == {h.name for h in inv.hosts}
    # the client port wants TLS with a client certificate: a plain request gets no answer
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://{inv.hosts[0].address}:{ports['etcd']}/health", timeout=2, verify=False)


def _etcd_logs(root: Path, inv) -> str:
    return "\n".join(f"--- {h.name}\n" + (root / h.name / "etcd.log").read_text(errors="replace")[-1500:]
                     for h in inv.hosts if (root / h.name / "etcd.log").exists())


# ---- Prometheus ---------------------------------------------------------------------------------

PROM = ROOT / "deploy" / "prometheus"


def test_promtool_checks_the_alert_rules():
    promtool = tool("promtool", str(VENV / "bin" / "promtool"))  # where setup.sh puts it
    r = subprocess.run([promtool, "check", "rules", str(PROM / "firebreak-alerts.yml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_promtool_runs_the_rule_tests_that_fire_and_do_not_fire():
    promtool = tool("promtool", str(VENV / "bin" / "promtool"))  # where setup.sh puts it
    r = subprocess.run([promtool, "test", "rules", str(PROM / "firebreak-alerts.test.yml")], capture_output=True,
                       text=True, timeout=120, cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr
