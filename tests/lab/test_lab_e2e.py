"""The lab end to end: writes, a power cut of the primary's site, Patroni alone promotes the
synchronous standby, every acknowledged write survives, the old primary rejoins, and `lab
down` leaves nothing behind."""

import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from firebreak.lab import procs
from tests.lab.conftest import LAB_HOME, lab_cli, status, wait_for

pytestmark = pytest.mark.lab

INSERT = ("INSERT INTO reports (receipt, idempotency_key, reporter_kind, service, window_start, window_end, "
          "claimed_amount, contact, site) VALUES (%s, %s, 'paid_user', 'messenger', now() - interval '1 hour', "
          "now(), 1000, 'test@example.org', 'test') RETURNING id")


class Writer(threading.Thread):
    """Writes through the multi-host DSN and records which writes were acknowledged."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.acked, self.failed, self.stop = dsn, [], 0, threading.Event()

    def run(self):
        conn = None
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                    warnings = []
                    conn.add_notice_handler(lambda d, w=warnings: w.append(d.message_primary))
                conn.execute(INSERT, ("T-" + key[:12], key))
                if not any("synchronous replication" in (w or "") for w in warnings):
                    self.acked.append(key)
            except psycopg.Error:
                self.failed += 1
                conn = None
                time.sleep(0.1)


def roles(st):
    return {name: s["postgres"]["role"] for name, s in st["sites"].items()}


@pytest.mark.lab_args("--no-agents")
def test_power_cut_of_the_primary_site_with_patroni_alone(lab_up):
    st = status()
    assert set(st) >= {"sites", "postgres_dsn", "etcd_endpoints", "app_urls"}
    assert list(st["sites"]) == ["pangyo", "ansan", "siheung"]
    for s in st["sites"].values():
        assert set(s) >= {"state", "address", "etcd", "patroni", "postgres", "app"}
        assert s["state"] == "up"
    assert "target_session_attrs=read-write" in st["postgres_dsn"]
    assert roles(st)["pangyo"] == "primary"
    sync = [n for n, r in roles(st).items() if r == "sync_standby"]
    assert len(sync) == 1
    # the estate's contract keys: the lab's one cluster, by the topology's name, and its service
    assert st["clusters"] == {"claims-db": {"primary": "pangyo", "sync_standby": sync[0], "members": roles(st),
                                            "dsn": st["postgres_dsn"]}}
    assert st["services"]["claims-app"]["urls"] == {n: s["door"] for n, s in st["sites"].items()}

    writer = Writer(st["postgres_dsn"])
    writer.start()
    wait_for(lambda: len(writer.acked) >= 50, 30, "50 acknowledged writes before the fault")
    r = lab_cli("power", "off", "pangyo")
    assert r.returncode == 0, r.stderr
    cut = time.monotonic()
    acked_at_cut = len(writer.acked)

    # Patroni alone: the leader key expires (ttl 20 s), then the synchronous standby promotes.
    new = wait_for(lambda: status()["primary"], 60, "a new primary")
    assert new == sync[0], f"expected the synchronous standby {sync[0]} to be promoted, got {new}"
    wait_for(lambda: len(writer.acked) > acked_at_cut + 20, 30, "writes to resume on the new primary")
    resumed = time.monotonic() - cut
    writer.stop.set()
    writer.join(timeout=30)

    with psycopg.connect(st["postgres_dsn"]) as conn:
        stored = {row[0] for row in conn.execute("SELECT idempotency_key FROM reports")}
    lost = [k for k in writer.acked if k not in stored]
    assert not lost, f"{len(lost)} acknowledged writes lost"
    assert st["sites"]["pangyo"]["state"] == "up" and status()["sites"]["pangyo"]["state"] == "off"
    print(f"writes resumed {resumed:.1f} s after the power cut; {len(writer.acked)} acknowledged, 0 lost")

    r = lab_cli("power", "on", "pangyo")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: roles(status())["pangyo"] in ("replica", "sync_standby"), 60,
             "the old primary to rejoin as a replica")
    assert status()["primary"] == new

    before = status()
    r = lab_cli("down")
    assert r.returncode == 0, r.stderr
    assert procs.marked(before["lab_id"]) == [], "lab processes left running"
    # Listening sockets are read from the kernel, not probed: after `down` the namespaces'
    # addresses route nowhere of ours, and a probe must never leave the machine.
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    for s in before["sites"].values():
        assert f"{s['address']}:" not in listening, f"something still listens on {s['address']}"
    if before["net"] == "netns":
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(s["netns"] in names for s in before["sites"].values())
    assert not (LAB_HOME / "state.json").exists()


def test_bad_input_is_refused_without_a_lab(tmp_path):
    r = lab_cli("power", "off", "nowhere")
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    bad = tmp_path / "two.yaml"
    bad.write_text("name: t\nsites: [a, b]\nservices: {x: {replicas: {a: 1}}}\n")
    r = lab_cli("up", "--topology", str(bad))
    assert r.returncode != 0 and "at least 3 sites" in (r.stdout + r.stderr)
    bad.write_text("name: t\nsites: [a, b, c]\nservices: {x: {replicas: {q: 1}}}\n")
    r = lab_cli("up", "--topology", str(bad))
    assert r.returncode == 2 and "unknown site 'q'" in r.stderr
