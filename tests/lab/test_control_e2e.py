"""The control plane on the real lab: a power cut of the primary's site with agents running,
and an isolation of the primary's site (netns only). Judged from recorded histories."""

import asyncio
import os
import threading
import time

import httpx
import psycopg
import pytest

from firebreak.drill import checks
from firebreak.drill.workload import (ORDINARY_TABLE, REPORT, ConsoleFlood, History, OrdinaryWriter, Reader, Writer,
                                     prepare_ordinary_table, seed_report)
from firebreak.control.keys import PatroniKeys
from firebreak.lab import access, lab
from firebreak.lab.state import lab_home, load, load_secrets
from tests.conftest import run_cli
from tests.lab.conftest import wait_for

pytestmark = pytest.mark.lab


def healthy():
    st = lab.status()
    return st if st["healthy"] else None


def run_load(st, fault, survivors, settle=1.0, timeout=60, db_doors=(), writers_via=None, on_resume=None):
    """Writers through the front doors (those of `writers_via`, or every site's), readers through
    the survivors', and an ordinary database client (libpq defaults, reconnect on error) through
    each site's database door in `db_doors`. `on_resume` is called as soon as writes resume."""
    doors = {n: s["door"] for n, s in st["sites"].items()}
    history, stop = History(), threading.Event()
    write_doors = {n: d for n, d in doors.items() if writers_via is None or n in writers_via}
    threads = [Writer(write_doors, history, stop, seed=i) for i in range(6)]
    if db_doors:
        prepare_ordinary_table(st["postgres_dsn"])
    threads += [OrdinaryWriter(n, st["db_door_dsns"][n], history, stop) for n in db_doors]
    report_id = seed_report(doors[survivors[0]])
    admin = load_secrets(lab_home()).app_admin
    threads += [Reader(n, doors[n], report_id, history, stop, token=admin) for n in survivors]
    for t in threads:
        t.start()
    time.sleep(1.5)
    info = fault()
    at = time.monotonic()
    try:
        wait_for(lambda: checks.write_rto(history.ops, at) is not None, timeout, "writes to resume", interval=0.05)
        if on_resume is not None:
            on_resume()
        if set(db_doors) & set(survivors):
            wait_for(lambda: checks.write_rto(history.ops, at, "sql") is not None, timeout,
                     "the ordinary client's writes through a surviving database door to resume")
        time.sleep(settle)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return list(history.ops), at, info


async def leader_lease() -> int:
    """The lease Patroni's leader key is held under (its session's), read as root."""
    etcd = access.client(load(lab_home()).layout, timeout=5)
    try:
        return (await etcd.get(PatroniKeys().leader)).lease
    finally:
        await etcd.close()


async def lease_ttl(lease: int) -> int:
    etcd = access.client(load(lab_home()).layout, timeout=5)
    try:
        return await etcd.lease_ttl(lease)
    finally:
        await etcd.close()


def primary_dsn(st) -> str:
    """The lab's DSN pinned to the server Patroni names primary, whatever else answers read-write."""
    pg = st["sites"][st["primary"]]
    return psycopg.conninfo.make_conninfo(st["postgres_dsn"], host=pg["address"], port=str(pg["postgres"]["port"]))


def stored_keys(dsn):
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT idempotency_key FROM reports WHERE idempotency_key IS NOT NULL")}


def stored_ordinary(dsn):
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute(f"SELECT key FROM {ORDINARY_TABLE}")}


def test_power_cut_fails_over_well_inside_patronis_ttl(running_lab):
    st = wait_for(healthy, 60, "a healthy lab")
    victim = st["primary"]
    sync = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "sync_standby")
    survivors = [n for n in st["sites"] if n != victim]
    other = next(n for n in survivors if n != sync)
    # No writes reach `other`'s app during the cut (its door sends to its own app), as with an
    # app that writes seldom: its pool still holds connections to the old primary, silent now,
    # when the first write reaches it, sent the moment writes resume elsewhere.
    first = []

    def idle_app_writes():
        first.append(httpx.post(st["sites"][other]["door"] + "/api/reports", json=REPORT, timeout=10))
    ops, at, _ = run_load(st, lambda: lab.power_off(victim), survivors, db_doors=[other],
                          writers_via=[victim, sync], on_resume=idle_app_writes)

    rto = checks.write_rto(ops, at)
    assert rto < 10.0, f"writes resumed only {rto:.1f} s after the cut; Patroni's TTL is 20 s"
    after = lab.status()
    assert after["primary"] == sync, "the synchronous standby must be the one promoted"
    assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
    # The ordinary client through a surviving site's database door was not left on the silent
    # socket (libpq defaults would wait minutes): the door shut its session and it wrote again.
    sql_rto = checks.write_rto(ops, at, "sql")
    assert sql_rto is not None and sql_rto < 10.0, sql_rto
    assert checks.lost_writes(ops, stored_ordinary(after["postgres_dsn"]), "sql") == []
    new_server = after["sites"][sync]["address"]
    assert {o.primary for o in checks.acked(ops, "sql") if o.invoke > at} == {new_server}
    assert checks.split_brain(ops) == []
    assert checks.read_failures(ops, survivors) == {s: 0 for s in survivors}
    # Its agent told it when writes left the old primary, so that write did not wait out a
    # deadline on a connection to the silent server (503, outcome unknown) but was stored.
    r = first[0]
    assert (r.status_code, r.headers.get("x-firebreak-site")) == (201, other), (r.status_code, r.text)
    assert r.headers["x-firebreak-primary"].split(":")[0] == new_server

    console = after["sites"][survivors[0]]["console"]
    ledger = httpx.get(console + "/api/ledger", timeout=5).json()
    assert any(e["site"] == victim for e in ledger), ledger
    status = httpx.get(console + "/api/status", timeout=5).json()
    assert status["primary"] == sync and status["coordinator"] in survivors
    # A surviving site whose own app stops: its door sends to the other survivor, never to the dead site.
    lonely, other = survivors
    lab.stop_component(lonely, "app")
    try:
        served = [httpx.get(after["sites"][lonely]["door"] + "/healthz", timeout=5).headers.get("x-firebreak-site")
                  for _ in range(20)]
    finally:
        lab.start_component(lonely, "app")
    assert set(served) == {other}, served

    lab.power_on(victim)
    wait_for(lambda: lab.status()["sites"][victim]["postgres"]["role"] in ("replica", "sync_standby"), 90,
             f"{victim} to rejoin as a replica")
    wait_for(healthy, 90, "every standby to stream again")


@pytest.mark.skipif(os.geteuid() != 0, reason="isolating a site needs network namespaces (root)")
def test_isolated_primary_stops_acknowledging_and_the_rest_elect_a_new_one(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    victim = st["primary"]
    victim_server = f"{st['sites'][victim]['address']}:{st['sites'][victim]['postgres']['port']}"
    survivors = [n for n in st["sites"] if n != victim]
    session = asyncio.run(leader_lease())
    # Clients can still reach the isolated site's door: the harshest case. An ordinary database
    # client in the isolated site must get an error there, not hang; one in a survivor writes again.
    # The isolated primary's session lease is revoked with its key (by the agent's etcd user,
    # which must be allowed to): healed within Patroni's ttl, its Patroni must not read a stale
    # copy of the deleted key as still its own and promote itself (failover.DeleteLeader). Read
    # as soon as writes resume (each read may first wait on the isolated site's etcd member): by
    # itself the lease would run out 20 s after the cut.
    def session_revoked():
        wait_for(lambda: asyncio.run(lease_ttl(session)) == -1, 10, "the isolated primary's session lease to go")
    ops, at, _ = run_load(st, lambda: lab.isolate(victim), survivors, settle=8.0, db_doors=[victim, survivors[0]],
                          on_resume=session_revoked)
    try:
        stranded = [o for o in ops if o.kind == "sql" and o.site == victim and o.complete > at]
        assert any(o.outcome != "ok" for o in stranded), "the isolated site's database door left its client hanging"
        late_sql = [o for o in checks.acked(ops, "sql") if o.primary == st["sites"][victim]["address"]
                    and o.complete > at + 0.5]
        assert late_sql == [], f"the isolated primary acknowledged {len(late_sql)} writes through a database door"
        assert checks.write_rto(ops, at, "sql") is not None
        now = wait_for(lambda: (lambda s: s if s["primary"] in survivors else None)(lab.status()),
                       60, "a new primary among the connected sites")
        late_acks = [o for o in checks.acked(ops) if o.primary == victim_server and o.complete > at + 0.5]
        assert late_acks == [], f"the isolated primary acknowledged {len(late_acks)} writes after the cut"
        assert checks.split_brain(ops) == []
        # Read from the new primary by name: until its Patroni demotes it (retry_timeout, then the
        # failsafe POSTs fail), the isolated old primary still answers read-write to this host, which
        # is outside the isolation, and a multi-host DSN may pick it: it holds none of the new writes.
        on_new = primary_dsn(now)
        assert checks.lost_writes(ops, stored_ordinary(on_new), "sql") == []
        assert checks.lost_writes(ops, stored_keys(on_new)) == []
    finally:
        lab.heal(victim)
    wait_for(lambda: lab.status()["sites"][victim]["postgres"]["role"] in ("replica", "sync_standby"), 90,
             f"{victim} to rejoin as a replica after the heal")


def ordinary_write(dsn: str) -> str:
    """One write as an ordinary client makes it; the address of the server that took it."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(f"INSERT INTO {ORDINARY_TABLE} (key) VALUES (gen_random_uuid()::text) "
                            "RETURNING host(inet_server_addr())").fetchone()[0]


def test_a_database_door_keeps_its_routes_without_its_agent_and_is_steered_again_when_it_returns(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    primary_addr = st["sites"][st["primary"]]["address"]
    site = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "replica")
    dsn = st["db_door_dsns"][site]
    prepare_ordinary_table(st["postgres_dsn"])
    assert ordinary_write(dsn) == primary_addr
    lab.stop_component(site, "agent")
    try:
        assert ordinary_write(dsn) == primary_addr  # last routes kept
        # A door restarted while its agent is away: HAProxy's own checks (Patroni's REST API) steer it.
        lab.stop_component(site, "dbdoor")
        lab.start_component(site, "dbdoor")
        assert wait_for(lambda: _try_write(dsn), 30, "the restarted door to reach the primary") == primary_addr
    finally:
        lab.start_component(site, "agent")
    console = st["sites"][site]["console"]
    door = wait_for(lambda: (lambda d: d if d and d["writes_to"] == st["primary"] else None)(
        httpx.get(console + "/api/status", timeout=5).json()["db_door"]), 30, "the agent to steer its door again")
    assert door["error"] is None and door["port"] == st["sites"][site]["db_door"]["port"]
    assert ordinary_write(dsn) == primary_addr
    wait_for(lambda: settled_coordinator({n: s["console"] for n, s in st["sites"].items()}), 30,
             "the coordinator to settle after the agent's return")


settled_coordinator = lab.settled_coordinator   # imported from here by the other lab modules


def _try_write(dsn: str) -> str | None:
    try:
        return ordinary_write(dsn)
    except psycopg.Error:
        return None


FLOOD_FOR = 20.0


def test_a_console_flood_stalls_no_detector_and_keeps_the_coordinator(running_lab):
    """FLOOD_FOR seconds of concurrent anonymous bad logins and bad Bearer requests at the
    coordinator's console: no site may be voted dead, the coordinator keeps its lease, nothing is
    stored. Twenty seconds are twenty detector windows and six coordinator lease periods (it was
    a minute: 40 s of the suite's critical path for the same assertions)."""
    st = wait_for(healthy, 120, "a healthy lab")
    consoles = {n: s["console"] for n, s in st["sites"].items()}
    coordinator = wait_for(lambda: settled_coordinator(consoles), 30, "every console to agree on a coordinator")
    audit_before = len(httpx.get(consoles[coordinator] + "/api/audit?limit=1000", timeout=5).json())
    flooder = ConsoleFlood([consoles[coordinator]], per_console=32)
    flooder.start()
    until = time.monotonic() + FLOOD_FOR
    samples, problems = 0, []
    while time.monotonic() < until:
        for site, url in consoles.items():
            try:
                doc = httpx.get(url + "/api/status", timeout=5).json()
            except httpx.HTTPError as e:
                problems.append(f"{site}'s console did not answer its status: {e!r}")
                continue
            samples += 1
            dead = [s for s, v in doc["sites"].items() if v["dead"]]
            if dead:
                problems.append(f"{site} saw {dead} dead: {[doc['sites'][s]['reason'] for s in dead]}")
            if doc["coordinator"] != coordinator:
                problems.append(f"{site} saw coordinator {doc['coordinator']} instead of {coordinator}")
        time.sleep(0.5)
    flooder.stop_event.set()
    flooder.join()
    result = flooder.answers
    assert samples > 3 * FLOOD_FOR and not problems, problems[:10]   # every console, about every 0.6 s
    sent = sum(n for k, n in result.items() if isinstance(k, int))
    assert sent > 100 and set(k for k in result if isinstance(k, int)) <= {303, 401, 422, 429}, result
    assert result.get(429, 0) > 0  # the flood was throttled, not served
    audit_after = httpx.get(consoles[coordinator] + "/api/audit?limit=1000", timeout=5).json()
    assert len(audit_after) == audit_before and not any(a["who"] == "anonymous" for a in audit_after)



OPEN_FROM_OUTSIDE = """
import socket, sys
held, refused = [], 0
for _ in range(int(sys.argv[3])):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
        held.append(s)
    except OSError:
        refused += 1
print(len(held), refused, flush=True)
sys.stdin.read()  # held until the test has been served from another address
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the per-source limit is nftables in each site's namespace (root)")
def test_a_door_holds_at_most_its_per_source_limit_from_one_address(running_lab):
    """One address (the lab's outsider namespace, as an attacker's host) opening more connections
    than the limit gets exactly the limit (deploy.components.door_limit_nft), while the door goes
    on serving everyone else; the kernel drops the rest before Caddy sees them."""
    import shutil
    import subprocess
    import sys

    from firebreak.deploy.components import DOOR_CONNECTIONS_PER_SOURCE
    from firebreak.lab.layout import NETNS_OUTSIDER, PORTS
    st = wait_for(healthy, 90, "a healthy lab")
    if st["net"] != "netns" or shutil.which("nft") is None:
        pytest.skip("a loopback lab's clients are all 127.0.0.1, and without nftables a lab has no such limit")
    site = next(iter(st["sites"].values()))
    tries = DOOR_CONNECTIONS_PER_SOURCE + 8
    opener = subprocess.Popen(["ip", "netns", "exec", NETNS_OUTSIDER, sys.executable, "-c", OPEN_FROM_OUTSIDE,
                               site["address"], str(PORTS["door"]), str(tries)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held, refused = map(int, opener.stdout.readline().split())
        assert (held, refused) == (DOOR_CONNECTIONS_PER_SOURCE, 8)
        # while that address holds its limit, another (this host's) is served
        assert httpx.get(site["door"] + "/healthz", timeout=5).status_code == 200
    finally:
        opener.kill()
        opener.wait()

def test_the_detectors_probes_leave_etcds_log_alone(running_lab):
    """The agents probe each site's etcd on its plain health listener, five times a second from
    every other site: on the TLS client port each bare connect was logged as a rejected handshake
    (20 MiB of log an hour, found by the soak)."""
    from firebreak.lab.state import lab_home
    logs = list((lab_home() / "sites").glob("*/log/etcd.log"))
    before = {p: p.stat().st_size for p in logs}
    time.sleep(5)  # 50 probe rounds
    grown = [p.read_bytes()[before[p]:] for p in logs]
    assert len(logs) == 3
    assert not any(b"rejected connection" in g for g in grown), [g[:300] for g in grown]


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_second_lab_leaves_the_running_labs_network_alone(running_lab, tmp_path, monkeypatch):
    """Two checkouts' labs have the same namespace and link names. A second one's `down --purge`
    (the tests' own first step) once deleted the first's namespaces by name, and its `up` then
    built a second network on the same addresses: the first lab's sites went deaf mid-test."""
    st = wait_for(healthy, 90, "a healthy lab")
    with monkeypatch.context() as m:
        m.setenv("FIREBREAK_HOME", str(tmp_path / "other"))
        up = run_cli("lab", "up", timeout=120)
        down = run_cli("lab", "down", "--purge", timeout=60)
    assert up.returncode == 1, up.stdout + up.stderr  # the machine's state, not bad input (2)
    assert "already exist" in up.stderr and "Traceback" not in up.stderr
    assert down.returncode == 0, down.stderr
    said = up.stdout + up.stderr + down.stdout + down.stderr
    assert "left alone, not made by this lab" in said, said
    after = wait_for(healthy, 30, "the first lab still healthy")
    assert after["primary"] == st["primary"]
