"""Every etcd key Firebreak reads or writes, declared once (as Patroni's DCS layer declares its own).

Two layouts: Firebreak's own, under a prefix (default `/firebreak`), and the few Patroni keys the
failover reads and rewrites, under a Patroni namespace (`/service/<scope>`). The ledger is a
contract between the agents (site outages), the drill runner (drill outages) and the claims
service (which reads it to verify reports): all three build its keys here.

| key | written by (etcd role, role_grants below) | lifetime |
|---|---|---|
| `views/<site>` | that site's agent (`agent-<site>`), when it stops reading true and every `fresh`/3 s | lease: gone when the agent is |
| `coordinator` | the coordinator (any `agent-<site>`) | lease |
| `frozen` | operators (freeze / unfreeze; `ops`) | until unfrozen |
| `drained/<site>` | operators (evacuate / restore; `ops`) | until restored |
| `operators/<name>` | `firebreak ops user-add` (`ops`) | until removed |
| `audit-log/<newest first>-<site>` | consoles, for authenticated requests only (`ops`) | newest AUDIT_KEEP kept (by the consoles) |
| `ledger/<start>-<site>`, `ledger/<start>-svc-<service>`, `ledger/drill-<start>-<site>` | agents, drills | LEDGER_KEEP_DAYS |
| `drills/<site>` | the drill runner, before it faults that site (`root`, the identity it already uses) | lease, kept alive while the drill runs: gone at its end, or seconds after its runner dies |
| `releases/<version>`, `release/current` | operators (release / deploy; `ops`) | newest RELEASES_KEEP kept (by the consoles) |
"""

from __future__ import annotations

from dataclasses import dataclass

# Retention: everything Firebreak keeps in etcd is bounded (etcd is a small, replicated store,
# and its quota is a hard stop: at NOSPACE it refuses every write, Patroni's included).
AUDIT_KEEP = 5_000
RELEASES_KEEP = 50
LEDGER_KEEP_DAYS = 400  # claims are filed for months after an outage; a year and a bit covers them


def prefix_end(prefix: str) -> str:
    """The end of etcd's range of every key under prefix."""
    b = bytearray(prefix.encode())
    b[-1] += 1
    return bytes(b).decode()


def newest_first(at: float) -> str:
    """A time as a name that sorts newest first (good until the year 2286). The audit log is read
    a page of its newest entries at a time, and etcd 3.5 answers a descending range by reading
    every key in it, then sorting and cutting: with the 5,000 entries retention keeps, a page of
    20 took 10.5 ms instead of 2.5 ms for the same page in key order (one member, through its
    gateway). In key order, a range with a limit reads just the page."""
    return f"{NEWEST_FIRST_EPOCH - at:018.6f}"


NEWEST_FIRST_EPOCH = 10**10

PREFIX = "/firebreak"              # Firebreak's own keys (Keys.prefix, the agent's `prefix`)
PATRONI_NAMESPACE = "/service/"    # Patroni's default `namespace`: every cluster's keys under it
PATRONI_SCOPE = "firebreak"        # the one cluster's scope when none is named


@dataclass(frozen=True)
class Keys:
    prefix: str = PREFIX

    def _k(self, *parts: str) -> str:
        return "/".join((self.prefix.rstrip("/"),) + parts)

    @property
    def views(self) -> str:
        return self._k("views", "")

    def view(self, site: str) -> str:
        return self._k("views", site)

    @property
    def coordinator(self) -> str:
        return self._k("coordinator")

    @property
    def frozen(self) -> str:
        return self._k("frozen")

    @property
    def coordination_span(self) -> tuple[str, str]:
        """[start, end) of one range holding the coordinator key, `frozen`, drained/ and drills/
        and nothing else (key order: coordinator < drained/ < drills/ < frozen), so that a tick
        reads them in one request. A key named between them would be read every tick too:
        tests/unit/test_keys_span.py lists every key's name."""
        return self.coordinator, self.frozen + "\0"

    @property
    def drained(self) -> str:
        return self._k("drained", "")

    def drained_site(self, site: str) -> str:
        return self._k("drained", site)

    @property
    def operators(self) -> str:
        return self._k("operators", "")

    def operator(self, name: str) -> str:
        return self._k("operators", name)

    @property
    def audit(self) -> str:
        return self._k("audit-log", "")

    def audit_entry(self, at: float, site: str) -> str:
        return self._k("audit-log", f"{newest_first(at)}-{site}")

    @property
    def ledger(self) -> str:
        return self._k("ledger", "")

    def ledger_entry(self, start: float, site: str, drill: bool = False) -> str:
        return self._k("ledger", f"{'drill-' if drill else ''}{start:.3f}-{site}")

    @property
    def drills(self) -> str:
        return self._k("drills", "")

    def drill(self, site: str) -> str:
        """A drill declared over `site` (control/drills.py): what the coordinator records while it
        is there is the drill's, not an outage."""
        return self._k("drills", site)

    def ledger_service_entry(self, start: float, service: str) -> str:
        """One service's own outage (control/outages.py): compensation is per service."""
        return self._k("ledger", f"{start:.3f}-svc-{service}")

    @property
    def releases(self) -> str:
        return self._k("releases", "")

    def release(self, version: str) -> str:
        return self._k("releases", version)

    @property
    def release_current(self) -> str:
        return self._k("release", "current")


@dataclass(frozen=True)
class PatroniKeys:
    """The Patroni keys the agent reads and rewrites (checked against the installed Patroni's
    own names by tests/unit/test_pinned_internals.py)."""

    namespace: str = PATRONI_NAMESPACE + PATRONI_SCOPE

    # Keys every Patroni cluster writes under its scope: a path with any of them is a cluster.
    MARKERS = ("leader", "members", "config", "initialize", "sync", "status", "history", "failover", "failsafe")

    @classmethod
    def of(cls, scope: str, namespace: str = PATRONI_NAMESPACE) -> "PatroniKeys":
        """The keys of the cluster named `scope` under a Patroni namespace (Patroni's own layout:
        `<namespace>/<scope>/leader`)."""
        return cls(namespace.rstrip("/") + "/" + scope)

    @property
    def root(self) -> str:
        return self.namespace.rstrip("/") + "/"

    @property
    def leader(self) -> str:
        return self.root + "leader"

    @property
    def sync(self) -> str:
        return self.root + "sync"

    @property
    def config(self) -> str:
        return self.root + "config"

    @property
    def history(self) -> str:
        """Patroni's record of past timelines; its last line + 1 is the cluster's timeline, which
        a primary without the leader key must not be behind to take it (failover.fenced_history)."""
        return self.root + "history"

    @property
    def members(self) -> str:
        return self.root + "members/"

    def member(self, name: str) -> str:
        return self.members + name


DEFAULT = Keys()


@dataclass(frozen=True)
class Grant:
    key: str
    prefix: bool   # every key under `key`, or that key alone
    perm: str      # READ | WRITE | READWRITE (etcd's names)


OPS_ROLE = "ops"


def agent_role(site: str) -> str:
    """The etcd role (and user) of one site's agent."""
    return f"agent-{site}"


def role_grants(keys: Keys = DEFAULT, patroni: "PatroniKeys | tuple[PatroniKeys, ...]" = PatroniKeys(),
                namespaces: tuple[str, ...] = (), sites: "tuple[str, ...] | list[str]" = ()) -> dict[str, tuple[Grant, ...]]:
    """The etcd roles of a locked estate, each with the narrowest permissions that work; the one
    list of who may write what (the lab's lock(), docs/DEPLOY.md and the tests read it here).

    `patroni` is every protected cluster; `namespaces` are those the agents discover clusters
    under (a range read of a whole namespace needs read access to all of it). `sites`: one role per
    site's agent, `agent-<site>`, that may write its own view and no other site's (trust the key:
    a view's key says which site wrote it, so only that site may write it). Without `sites`, one
    shared `agent` role that may write every view (for callers that do not know the sites; a
    compromised host holding it can speak for every site, so a real estate names its sites).

    No agent may write what operators decide: `frozen`, `drained/`, `operators/`, `releases/`,
    `release/current` and the audit log are the `ops` role's, which the consoles use for the
    writes they make on an authenticated operator's behalf. Nor `drills/`: a declared drill turns
    the outages recorded during it into rehearsals nobody is paid for, so an agent that could
    declare one could erase a real outage from the claims. It is root's alone (no grant below): the
    drill runner already acts as root for its consistency checks (etcd's HashKV is root only), so
    a role of its own would narrow nothing the drill process holds. etcd's maintenance calls (defragment,
    move-leader, hash) need its root role whatever the grants: the agents use a separate admin
    identity for those, and only when given one."""
    own = keys._k("")
    clusters = (patroni,) if isinstance(patroni, PatroniKeys) else tuple(patroni)
    reads = tuple(Grant(ns.rstrip("/") + "/", True, "READ") for ns in namespaces) or \
        tuple(Grant(c.root, True, "READ") for c in clusters)
    # Every agent: read all of Firebreak's keys and the Patroni namespaces; write the coordinator
    # key (the election), the ledger (the coordinator records incidents and service outages there,
    # and prunes it), and exactly what the failover rewrites in Patroni's namespace: each cluster's
    # leader key (a compare-and-delete of a dead leader's), members/ (fencing a dead member) and
    # history (the released primary's timeline, in the same transaction as the delete).
    # etcd grants no delete without put, so these are READWRITE.
    agents = (Grant(own, True, "READ"),) + reads + (
        Grant(keys.coordinator, False, "READWRITE"), Grant(keys.ledger, True, "READWRITE")) + tuple(
        g for c in clusters for g in (Grant(c.leader, False, "READWRITE"), Grant(c.members, True, "READWRITE"),
                                      Grant(c.history, False, "READWRITE")))
    if sites:
        agent_roles = {agent_role(s): agents + (Grant(keys.view(s), False, "READWRITE"),) for s in sites}
    else:
        agent_roles = {"agent": agents + (Grant(keys.views, True, "READWRITE"),)}
    return {
        # Patroni: its own clusters' namespaces, nothing else.
        "patroni": tuple(Grant(c.root, True, "READWRITE") for c in clusters),
        **agent_roles,
        # The claims service reads the outage ledger to verify reports.
        "claims": (Grant(keys.ledger, True, "READ"),),
        # Operators, through a console or `firebreak ops`: what people decide, and the record of it.
        OPS_ROLE: (Grant(keys.frozen, False, "READWRITE"), Grant(keys.drained, True, "READWRITE"),
                   Grant(keys.operators, True, "READWRITE"), Grant(keys.releases, True, "READWRITE"),
                   Grant(keys.release_current, False, "READWRITE"), Grant(keys.audit, True, "READWRITE")),
    }
