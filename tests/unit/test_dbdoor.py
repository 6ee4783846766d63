"""The database door: where it routes (a pure function of the cluster and what the agent sees),
the runtime API commands that get it there, and HAProxy accepting both its configuration and those
commands (a real HAProxy on loopback, no PostgreSQL needed)."""

import asyncio
import os
import shutil
import socket
import subprocess
import time

import pytest

from firebreak.control.dbdoor import (PATRONI_RECIPE, RO, RW, DbDoorKeeper, Recipe, Routes, commands,
                                      haproxy_config, routes, writes_left)
from firebreak.control.failover import ClusterState, Member

SITES = ["pangyo", "ansan", "siheung"]
SITE_OF = {s: s for s in SITES}


def member(name, role="replica", state="streaming"):
    return Member(name, role, state, "", 1, 0, "{}")


def cluster(leader="pangyo", roles=None):
    roles = roles or {"pangyo": ("primary", "running"), "ansan": ("sync_standby", "streaming"),
                      "siheung": ("replica", "streaming")}
    return ClusterState(leader=leader, leader_revision=1, sync_leader=leader, sync_standbys=("ansan",),
                        members={n: member(n, r, s) for n, (r, s) in roles.items()})


@pytest.mark.parametrize("name,state,dead,unreachable,seen,rw,ro", [
    ("healthy", cluster(), set(), set(), 3, "pangyo", ("ansan", "siheung")),
    # the primary's site voted dead: writes refused until the new leader holds the lock
    ("primary's site dead", cluster(), {"pangyo"}, {"pangyo"}, 2, None, ("ansan", "siheung")),
    # this agent alone cannot reach the primary: its clients get a fast error, not a hang
    ("primary unreachable from here", cluster(), set(), {"pangyo"}, 2, None, ("ansan", "siheung")),
    ("leader lock released", cluster(leader=None), {"pangyo"}, {"pangyo"}, 2, None, ("ansan", "siheung")),
    # the new leader holds the lock (promotion may still be running: writes get a read-only error)
    ("new leader", cluster(leader="ansan", roles={"pangyo": ("primary", "running"),
                                                   "ansan": ("promoted", "running"),
                                                   "siheung": ("replica", "streaming")}),
     {"pangyo"}, {"pangyo"}, 2, "ansan", ("siheung",)),
    # cut off from the majority: nothing routed, even a primary in this very site
    ("this site cut off", cluster(), set(), {"ansan", "siheung"}, 1, None, ()),
    ("standby not streaming", cluster(roles={"pangyo": ("primary", "running"), "ansan": ("replica", "starting"),
                                             "siheung": ("replica", "stopped")}), set(), set(), 3,
     "pangyo", ("pangyo",)),  # no living standby: reads go to the primary
])
def test_routes(name, state, dead, unreachable, seen, rw, ro):
    r = routes(state, SITE_OF, dead, unreachable, sites_seen=seen, sites_total=3)
    assert (r.rw, r.ro) == (rw, ro), name
    assert r.why


@pytest.mark.parametrize("drained,rw,ro", [
    ({"siheung"}, "pangyo", ("ansan",)),               # reads leave the evacuated site
    ({"ansan", "siheung"}, "pangyo", ("ansan", "siheung")),  # unless no other standby is left
    ({"pangyo"}, "pangyo", ("ansan", "siheung")),      # writes follow the primary wherever it is
])
def test_an_evacuated_sites_standbys_get_no_reads(drained, rw, ro):
    r = routes(cluster(), SITE_OF, set(), set(), sites_seen=3, sites_total=3, drained=frozenset(drained))
    assert (r.rw, r.ro) == (rw, ro)


def test_commands_close_every_other_server_and_shut_its_sessions_after_opening_the_route():
    cmds = commands(SITES, Routes("ansan", ("siheung",)))
    assert cmds[:6] == [f"disable health {b}/{s}" for b in (RW, RO) for s in SITES]
    rw = [c for c in cmds if f" {RW}/" in c and not c.startswith("disable")]
    assert rw[0] == f"set server {RW}/ansan state ready"
    for s in ("pangyo", "siheung"):
        i = rw.index(f"set server {RW}/{s} state maint")
        assert rw[i + 1] == f"shutdown sessions server {RW}/{s}"
    assert f"set server {RO}/siheung state ready" in cmds
    assert f"shutdown sessions server {RO}/siheung" not in cmds


def test_commands_with_no_route_close_everything():
    cmds = commands(SITES, Routes(None, ()))
    assert not [c for c in cmds if c.endswith("state ready")]
    assert sum(c.startswith("shutdown sessions") for c in cmds) == 6


@pytest.mark.parametrize("before, rw, left", [
    (None, "ansan", False),      # nothing known yet: the agent just started
    ("pangyo", "pangyo", False),
    ("pangyo", None, True),      # the primary's site went silent: writes refused meanwhile
    ("pangyo", "ansan", True),   # a switchover, or a failover seen at once
    (None, None, False),
])
def test_writes_left_the_server_they_went_to(before, rw, left):
    assert writes_left(before, Routes(rw, ())) is left


def test_routes_compare_without_the_reason():
    assert Routes("a", ("b",), "one reason") == Routes("a", ("b",), "another")


SERVERS = {"pangyo": ("127.0.0.1", 1, 2), "ansan": ("127.0.0.1", 3, 4)}


def test_config_is_the_patroni_recipe_with_a_private_admin_socket():
    cfg = haproxy_config(name="t", bind_host="10.0.0.5", rw_port=5000, ro_port=5001, servers=SERVERS,
                         admin_socket="/run/x.sock", recipe=PATRONI_RECIPE)
    assert "stats socket /run/x.sock mode 600 level admin" in cfg
    assert "bind 10.0.0.5:5000" in cfg and "bind 10.0.0.5:5001" in cfg
    assert "uri /primary" in cfg and "uri /replica" in cfg
    assert "server pangyo 127.0.0.1:1 check port 2 inter 3000 fall 3 rise 2 on-marked-down shutdown-sessions" in cfg
    bare = haproxy_config(name="t", bind_host="h", rw_port=1, ro_port=None, servers=SERVERS, admin_socket=None)
    assert "stats socket" not in bare and "pg_ro" not in bare


def test_the_runtime_socket_opens_to_haproxys_group_when_asked():
    """On real hosts the agent is not HAProxy's user: it joins HAProxy's group, so the socket is
    660 there (deploy/components.py); 600 otherwise."""
    cfg = haproxy_config(name="t", bind_host="h", rw_port=1, ro_port=2, servers=SERVERS, admin_socket="/run/x.sock",
                         socket_mode="660")
    assert "stats socket /run/x.sock mode 660 level admin" in cfg and "mode 600" not in cfg


HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
needs_haproxy = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                   reason="HAProxy not installed (make setup installs it as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_states(sock: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(backend, server) -> (operational state, admin state) from `show servers state`."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"show servers state\n")
    raw = b""
    while chunk := s.recv(65536):
        raw += chunk
    out = {}
    for line in raw.decode().splitlines():
        f = line.split()
        if len(f) > 6 and f[0].isdigit():
            out[(f[1], f[3])] = (int(f[5]), int(f[6]))
    return out


@needs_haproxy
def test_haproxy_accepts_the_config_and_the_keeper_steers_it(tmp_path):
    sock = str(tmp_path / "door.sock")
    servers = {s: ("127.0.0.1", _free_port(), _free_port()) for s in SITES}
    cfg = tmp_path / "door.cfg"
    cfg.write_text(haproxy_config(name="t", bind_host="127.0.0.1", rw_port=_free_port(), ro_port=_free_port(),
                                  servers=servers, admin_socket=sock, recipe=Recipe()))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "door.sock").exists():
            assert time.monotonic() < deadline, "HAProxy did not open its runtime socket"
            time.sleep(0.05)
        keeper = DbDoorKeeper(sock, SITES)
        assert asyncio.run(keeper.apply({"firebreak": Routes("ansan", ("siheung",))}, now=100.0))
        assert keeper.last_error == ""
        states = _server_states(sock)
        # ready and unchecked: up (2) with admin state 0, though nothing listens on its port
        assert states[(RW, "ansan")] == (2, 0)
        assert states[(RW, "pangyo")][1] & 1 and states[(RW, "siheung")][1] & 1  # maintenance
        assert states[(RO, "siheung")] == (2, 0)
        assert not asyncio.run(keeper.apply({"firebreak": Routes("ansan", ("siheung",))}, now=101.0))  # nothing changed
        assert asyncio.run(keeper.apply({"firebreak": Routes(None, ())}, now=102.0))
        assert all(admin & 1 for (b, _), (_, admin) in _server_states(sock).items())
        # a server the door does not know: refused, said, and retried next time
        bad = DbDoorKeeper(sock, ["nowhere"])
        assert not asyncio.run(bad.apply({"firebreak": Routes("nowhere", ())}, now=1.0))
        assert "No such server" in bad.last_error and bad.applied is None
    finally:
        proc.terminate()
        proc.wait(5)


def test_keeper_says_when_the_door_is_not_there(tmp_path):
    keeper = DbDoorKeeper(str(tmp_path / "missing.sock"), SITES)
    assert not asyncio.run(keeper.apply({"firebreak": Routes("ansan", ())}, now=1.0))
    assert "not reachable" in keeper.last_error


def test_the_shipped_example_is_what_the_function_writes():
    """deploy/example/gj-1 is what `deploy render` writes for one host of the example inventory:
    HAProxy's file there is this function's, its socket open to HAProxy's group."""
    from pathlib import Path

    from firebreak.control.dbdoor import ClusterDoor

    example = Path(__file__).resolve().parents[2] / "deploy/example/gj-1/etc/firebreak/haproxy.cfg"
    servers = {"gwangju": ("10.10.0.11", 5432, 8008), "daejeon": ("10.20.0.11", 5432, 8008),
               "busan": ("10.30.0.11", 5432, 8008)}
    assert example.read_text() == haproxy_config(
        name="database door of gwangju", bind_host="10.10.0.11", admin_socket="/run/firebreak-db-door/admin.sock",
        socket_mode="660", clusters=[ClusterDoor(None, 5433, 5434, servers)])
