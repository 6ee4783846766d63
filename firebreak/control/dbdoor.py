"""Each site's database door: HAProxy in front of PostgreSQL, steered by the site's agent.

Ordinary clients (libpq defaults, a reconnect-on-error loop) know one host and port: their site's
door. The door's read-write port reaches the current primary, its read-only port the living
standbys. HAProxy's own health checks (Patroni's REST API, the usual recipe) steer it while no
agent is around; once the agent is there it switches those checks off and drives the routes itself
through HAProxy's runtime API, because it knows sooner:

* when a majority votes the primary's site dead, the old primary is taken out and every session
  still bound to it is shut at once, so a client blocked on a silent socket gets an error now,
  not when TCP gives up minutes later;
* writes go only to the holder of Patroni's leader lock; while it is being promoted a write gets
  PostgreSQL's read-only error and the client retries, so no write ever lands on a node that is
  not the primary;
* an agent that sees fewer than a majority of sites (its own cut off) closes the read-write port:
  a fast error instead of a hang on a primary that cannot commit;
* an agent that dies leaves the door on its last routes; a door that restarts gets them again
  within REFRESH seconds.

`routes` and `commands` are pure; `DbDoorKeeper` is the thin shell that talks to the socket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

from firebreak.control import haproxy_api
from firebreak.control.detector import majority
from firebreak.control.failover import ClusterState

log = logging.getLogger("firebreak.dbdoor")

RW, RO = "pg_rw", "pg_ro"   # the backends of a door that serves one cluster


def backends(scope: str | None) -> tuple[str, str]:
    """HAProxy's read-write and read-only backend names for a cluster's frontends on a door."""
    return (RW, RO) if not scope else (f"rw_{scope}", f"ro_{scope}")
STANDBY_ROLES = ("replica", "sync_standby", "standby_leader")
LIVE_STATES = ("running", "streaming")


@dataclass(frozen=True)
class Routes:
    rw: str | None               # the member that gets writes, or None: the port refuses
    ro: tuple[str, ...]          # members that get reads
    why: str = field(default="", compare=False)  # for the log; not part of what the door does


def routes(cluster: ClusterState, site_of: Mapping[str, str], dead: set[str], unreachable: set[str],
           sites_seen: int, sites_total: int, drained: frozenset[str] = frozenset()) -> Routes:
    """Where this site's door sends clients. `dead`: sites voted dead by a majority; `unreachable`:
    sites this agent's own probes cannot reach; `sites_seen`: how many sites (its own included)
    this agent reaches; `drained`: sites operators evacuated, whose standbys get no reads while
    another living standby can take them (writes follow the primary wherever it is)."""
    def gone(member: str) -> bool:
        site = site_of.get(member, member)
        return site in dead or site in unreachable

    if sites_seen < majority(sites_total):
        return Routes(None, (), f"this site reaches {sites_seen} of {sites_total} sites: writes refused")
    leader = cluster.leader
    rw, why = None, "no leader lock held"
    if leader is not None:
        rw, why = (None, f"primary {leader}'s site is down") if gone(leader) else (leader, f"primary {leader}")
    standbys = tuple(sorted(
        m.name for m in cluster.members.values()
        if m.name != leader and m.role in STANDBY_ROLES and m.state in LIVE_STATES and not gone(m.name)))
    kept = tuple(m for m in standbys if site_of.get(m, m) not in drained) or standbys
    return Routes(rw, kept or ((rw,) if rw else ()), why)


def writes_left(before: str | None, now: Routes) -> bool:
    """Writes no longer go to `before`, the member they went to: clients holding connections to
    it (the site's app keeps a pool) should hang them up, as the door shuts its own sessions.
    None before (nothing known yet, or no primary) has nothing to hang up."""
    return before is not None and now.rw != before


def commands(servers: list[str], new: Routes, scope: str | None = None) -> list[str]:
    """HAProxy runtime API commands that put the door in `new` whatever state it is in (just
    restarted with its health checks on, or steered before): idempotent, so the same list serves
    a change and a refresh. Per backend, routes are opened first, then the others closed and their
    sessions shut, so a client that reconnects lands on the new route, never on the old one."""
    rw, ro = backends(scope)
    out = [f"disable health {b}/{s}" for b in (rw, ro) for s in servers]
    for backend, want in ((rw, {new.rw} - {None}), (ro, set(new.ro))):
        out += [f"set server {backend}/{s} state ready" for s in servers if s in want]
        for s in servers:
            if s not in want:
                out += [f"set server {backend}/{s} state maint", f"shutdown sessions server {backend}/{s}"]
    return out


@dataclass(frozen=True)
class Recipe:
    """HAProxy's health checks on Patroni's REST API: the usual Patroni recipe, and the door's
    behaviour while no agent steers it."""
    inter_ms: int = 1000
    fall: int = 2
    rise: int = 1


PATRONI_RECIPE = Recipe(inter_ms=3000, fall=3, rise=2)  # the values in Patroni's HAProxy example


@dataclass(frozen=True)
class ClusterDoor:
    """One cluster's frontends on a door: `servers` maps a member name to (host, postgres port,
    Patroni REST port). `scope` None is a door of one cluster (backends pg_rw, pg_ro)."""
    scope: str | None
    rw_port: int
    ro_port: int | None
    servers: Mapping[str, tuple[str, int, int]]


def haproxy_config(*, name: str, bind_host: str, admin_socket: str | None, recipe: Recipe = Recipe(),
                   rw_port: int | None = None, ro_port: int | None = None,
                   servers: Mapping[str, tuple[str, int, int]] | None = None,
                   clusters: list[ClusterDoor] | None = None, socket_mode: str = "600") -> str:
    """HAProxy's configuration: one cluster (rw_port, ro_port, servers) or several (`clusters`).
    Without `admin_socket` nothing can steer it: health checks alone (the Patroni recipe).
    `socket_mode`: the runtime socket's file mode, its only lock (it has no authentication): 600
    when the agent runs as HAProxy's user (the lab), 660 when it joins HAProxy's group (real hosts)."""
    if clusters is None:
        assert rw_port is not None and servers is not None
        clusters = [ClusterDoor(None, rw_port, ro_port, servers)]
    lines = [
        f"# {name}: written by Firebreak; the agent steers it through the runtime API",
        "global",
        "    maxconn 4096",
    ]
    if admin_socket:
        lines.append(f"    stats socket {admin_socket} mode {socket_mode} level admin")
    lines += [
        "defaults",
        "    mode tcp",
        # A door that cannot reach a server says so in a second, not after the client's patience.
        "    timeout connect 1s",
        # Database sessions idle for long; keep-alives notice a peer that vanished.
        "    timeout client 30m",
        "    timeout server 30m",
        "    option clitcpka",
        "    option srvtcpka",
        "    retries 0",
    ]
    check = (f"check port {{api}} inter {recipe.inter_ms} fall {recipe.fall} rise {recipe.rise} "
             "on-marked-down shutdown-sessions")
    for c in clusters:
        rw, ro = backends(c.scope)
        for backend, port, probe in ((rw, c.rw_port, "/primary"), (ro, c.ro_port, "/replica")):
            if port is None:
                continue
            lines += [
                f"listen {backend}",
                f"    bind {bind_host}:{port}",
                "    option httpchk",
                f"    http-check send meth OPTIONS uri {probe}",
                "    http-check expect status 200",
                "    balance " + ("first" if backend == rw else "leastconn"),
            ]
            for member, (host, pg_port, api_port) in c.servers.items():
                lines.append(f"    server {member} {host}:{pg_port} " + check.format(api=api_port))
    return "\n".join(lines) + "\n"


class DbDoorKeeper:
    """Sends route changes to HAProxy's runtime API over its unix socket, and the whole state
    again every REFRESH seconds, so a door that restarted (its site came back) is steered again
    without waiting for the next change."""

    REFRESH = 5.0

    def __init__(self, socket_path: str, servers: list[str]):
        self.socket_path = socket_path
        self.servers = servers
        self.applied: dict[str, Routes] | None = None  # scope -> routes as last put in the door; None: unknown
        self.refreshed_at = 0.0               # when every cluster's routes were last sent
        self.last_error = ""

    async def apply(self, new: dict[str, Routes], now: float) -> bool:
        """Put the door in `new` (scope -> routes): the clusters whose routes changed, writes
        first, or all of them when the refresh is due. A door of one cluster keeps the plain
        backend names (pg_rw, pg_ro); several are named per scope."""
        due = now - self.refreshed_at >= self.REFRESH
        before = {} if due or self.applied is None else self.applied
        changed = sorted((scope for scope, r in new.items() if before.get(scope) != r),
                         key=lambda sc: sc in before and before[sc].rw == new[sc].rw)
        if not changed:
            return False
        single = len(new) == 1
        cmds = [c for scope in changed for c in commands(self.servers, new[scope], None if single else scope)]
        error = await haproxy_api.send_all(self.socket_path, cmds, "database door")
        if error:
            self._failed(error)
            return False
        for scope in changed:
            if new[scope] != (self.applied or {}).get(scope):
                r = new[scope]
                log.info("database door%s: writes to %s, reads from %s (%s)", "" if single else f" ({scope})",
                         r.rw or "nobody", ", ".join(r.ro) or "nobody", r.why)
        self.applied, self.last_error = dict(new), ""
        if due:
            self.refreshed_at = now
        return True

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.error("%s (retrying)", message)
        self.last_error, self.applied, self.refreshed_at = message, None, 0.0
