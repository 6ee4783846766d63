"""What the lab builds from a `check` topology: a pure function from the topology to a plan.

Every site of the topology is a lab site (its own address or network namespace). Each `database`
is its own Patroni cluster, a member in each site its `replicas` name, bootstrapped where its
`primary` says, with synchronous replication when `replication: sync`. Each plain `service` runs
as the reference estate service (firebreak/estate/service.py) in each of its sites, reached
through every site's front door at `/s/<name>/`; it answers only while every database it
depends on takes a write through its site's database door. The `quorum` service is the lab's
etcd, and `ops-tool` services are the agents' consoles and actions, which run in every site.

What the lab cannot build is refused before anything starts, every problem at once, each naming
its field (InputError: exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from firebreak.errors import InputError, Problem
from firebreak.lab.layout import PORTS, SCOPE, SiteLayout
from firebreak.topology import Failover, Kind, Replication, Topology

MIN_SITES = 3
MAX_SITES = 7         # etcd members: 7 is etcd's own recommended maximum
MAX_CLUSTERS = 8      # each site runs a PostgreSQL and a Patroni per cluster, on 2 cores
MAX_SERVICES = 12
PORT_STRIDE = 100     # cluster k's ports are the default lab's + k * PORT_STRIDE
SERVICE_PORT = 18070  # service j listens on SERVICE_PORT + j * PORT_STRIDE in each of its sites


@dataclass(frozen=True)
class ClusterPlan:
    name: str                     # the topology's database name, also its Patroni scope
    index: int
    primary: str                  # the site that bootstraps it
    sites: tuple[str, ...]        # where it has a member (one per site), primary first
    sync: bool                    # synchronous_mode: an acknowledged commit is on two sites
    doors: bool                   # its clients go through the sites' database doors
    legacy: bool = False          # the default lab's one cluster: scope 'firebreak', database 'claims'
    quorum_commit: bool = False   # synchronous_mode: quorum (ANY 1 of the standbys), not one named standby

    @property
    def synchronous_mode(self) -> bool | str:
        """Patroni's synchronous_mode for this cluster: "quorum", True or False."""
        return "quorum" if self.quorum_commit else self.sync

    @property
    def scope(self) -> str:
        return SCOPE if self.legacy else self.name

    @property
    def component(self) -> str:
        """The lab's name for this cluster's Patroni (and its PostgreSQL) in a site."""
        return "patroni" if self.legacy else f"patroni@{self.name}"

    @property
    def dbname(self) -> str:
        return "claims" if self.legacy else "estate"

    @property
    def app_user(self) -> str:
        """The role its services log in as (the default lab's claims app, or the estate's services)."""
        return "claims" if self.legacy else "estate"

    def port(self, name: str) -> int:
        """postgres, patroni, db_door or db_door_ro: the default lab's port + index * PORT_STRIDE."""
        return PORTS[name] + self.index * PORT_STRIDE

    def dir(self, site: SiteLayout) -> Path:
        return site.dir if self.legacy else site.dir / "db" / self.name

    def patroni_url(self, site: SiteLayout) -> str:
        return f"http://{site.address}:{self.port('patroni')}"


@dataclass(frozen=True)
class ServicePlan:
    name: str
    index: int
    sites: tuple[str, ...]        # one instance in each
    databases: tuple[str, ...]    # clusters it writes to
    services: tuple[str, ...]     # other services it calls through its own site's door
    needs: int

    @property
    def port(self) -> int:
        return SERVICE_PORT + self.index * PORT_STRIDE

    @property
    def component(self) -> str:
        return f"svc@{self.name}"

    def url(self, site: SiteLayout) -> str:
        return f"http://{site.address}:{self.port}"


@dataclass(frozen=True)
class LabPlan:
    topology: str
    sites: tuple[str, ...]
    clusters: tuple[ClusterPlan, ...]
    services: tuple[ServicePlan, ...]
    quorum: str | None            # the topology's name for etcd
    tools: tuple[str, ...]        # ops-tool services: the agents' consoles and actions
    estate: bool = True           # built from a topology (False: the default lab, its claims app)
    door: str = "caddy"           # each site's front door: caddy or haproxy (`lab up --door`)

    @property
    def door_clusters(self) -> tuple[ClusterPlan, ...]:
        """The clusters whose clients go through database doors: those that declare `doors: true`
        (the default lab's one cluster always does). Each site's door serves every one of them,
        with a member in that site or not: a door is where that site's clients are."""
        return tuple(c for c in self.clusters if c.doors)

    def components(self, site: str, agents: bool = True) -> list[str]:
        """What runs in `site`, in start order (etcd first: Patroni needs its own site's member).
        A database door (`dbdoor`) only when some cluster declares doors: a door nobody declared
        is one `check --live --against` the same file reports as drift."""
        out = ["etcd", *(c.component for c in self.clusters if site in c.sites)]
        out += ["dbdoor"] if self.door_clusters else []
        out += [s.component for s in self.services if site in s.sites] if self.estate else ["app"]
        return out + ["door"] + (["agent"] if agents else [])

    def cluster(self, name: str) -> ClusterPlan:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def service(self, name: str) -> ServicePlan:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)


def plan_lab(topo: Topology) -> LabPlan:
    """The lab for `topo`, or InputError naming every field the lab cannot build."""
    problems: list[Problem] = []

    def bad(field: str, reason: str) -> None:
        problems.append(Problem(topo.source, field, reason))

    sites = topo.sites
    if len(sites) < MIN_SITES:
        bad("sites", f"the lab needs at least {MIN_SITES} sites for etcd and Patroni to survive the loss of one; "
                     f"this topology has {len(sites)}")
    if len(sites) > MAX_SITES:
        bad("sites", f"the lab runs one etcd member per site, at most {MAX_SITES}; this topology has {len(sites)}")
    databases = [s for s in topo.services.values() if s.kind == Kind.DATABASE]
    plain = [s for s in topo.services.values() if s.kind == Kind.SERVICE]
    quorums = [s for s in topo.services.values() if s.kind == Kind.QUORUM]
    tools = [s for s in topo.services.values() if s.kind == Kind.OPS_TOOL]
    if not databases:
        bad("services", "no database: the lab needs at least one (kind: database) to protect")
    if len(databases) > MAX_CLUSTERS:
        bad("services", f"{len(databases)} databases; the lab runs at most {MAX_CLUSTERS} Patroni clusters")
    if len(plain) > MAX_SERVICES:
        bad("services", f"{len(plain)} services; the lab runs at most {MAX_SERVICES}")

    every_site = {s: 1 for s in sites}
    for q in quorums[1:]:
        bad(f"services.{q.name}.kind", f"the lab has one quorum service, its etcd ('{quorums[0].name}')")
    for q in quorums[:1]:
        if {s: n for s, n in q.replicas.items() if n} != every_site:
            bad(f"services.{q.name}.replicas", "the lab's etcd has exactly one member in every site; "
                                               f"declare replicas: {{{', '.join(f'{s}: 1' for s in sites)}}}")
    for t in tools:
        if {s: n for s, n in t.replicas.items() if n} != every_site:
            bad(f"services.{t.name}.replicas", "the lab runs the agents' consoles and actions in every site, one "
                                               f"each; declare replicas: {{{', '.join(f'{s}: 1' for s in sites)}}}")
    for db in databases:
        at = f"services.{db.name}"
        for site, n in db.replicas.items():
            if n > 1:
                bad(f"{at}.replicas.{site}", f"{n} members in one site; the lab runs one PostgreSQL member per "
                                             "site per cluster")
        if db.failover == Failover.MANUAL:
            bad(f"{at}.failover", "the lab's clusters run under Patroni, which fails over by itself; declare "
                                  "failover: auto")
        if db.replication == Replication.SYNC and len(db.sites()) < 2:
            bad(f"{at}.replication", "synchronous replication needs members in at least two sites")
        for dep in db.depends_on:
            if topo.services[dep].kind not in (Kind.QUORUM, Kind.OPS_TOOL):
                bad(f"{at}.depends_on", f"'{dep}': a lab database depends only on etcd (quorum) and ops tools")
    for svc in plain:
        at = f"services.{svc.name}"
        for site, n in svc.replicas.items():
            if n > 1:
                bad(f"{at}.replicas.{site}", f"{n} instances in one site; the lab runs one instance per site")
        if svc.needs > len(svc.sites()):
            bad(f"{at}.needs", f"needs {svc.needs} instances but the lab runs {len(svc.sites())} (one per site)")
    if problems:
        raise InputError(problems)

    clusters = tuple(
        ClusterPlan(name=db.name, index=i, primary=db.primary or db.sites()[0],
                    sites=tuple([db.primary] + [s for s in sites if s in db.sites() and s != db.primary]),
                    sync=db.replication in (Replication.SYNC, Replication.QUORUM), doors=db.doors,
                    quorum_commit=db.replication == Replication.QUORUM)
        for i, db in enumerate(databases))
    names = {c.name for c in clusters}
    services = tuple(
        ServicePlan(name=svc.name, index=j, sites=tuple(s for s in sites if s in svc.sites()),
                    databases=tuple(d for d in svc.depends_on if d in names),
                    services=tuple(d for d in svc.depends_on if topo.services[d].kind == Kind.SERVICE),
                    needs=svc.needs)
        for j, svc in enumerate(plain))
    return LabPlan(topology=topo.name, sites=sites, clusters=clusters, services=services,
                   quorum=quorums[0].name if quorums else None, tools=tuple(t.name for t in tools))


def default_cluster(sites: list[str] | tuple[str, ...], primary: str | None = None, name: str = "claims-db",
                    replication: str = "sync") -> ClusterPlan:
    """The default lab's one cluster: scope 'firebreak', a member in every site, synchronous
    replication to one named standby ("sync") or to ANY 1 of the others ("quorum")."""
    primary = primary or sites[0]
    return ClusterPlan(name=name, index=0, primary=primary, sites=tuple([primary] + [s for s in sites if s != primary]),
                       sync=True, doors=True, legacy=True, quorum_commit=replication == "quorum")


def default_plan(topo: Topology, replication: str = "sync") -> LabPlan:
    """Today's lab: one cluster (scope 'firebreak') in every site, the claims app as its service."""
    db = next((s for s in topo.services.values() if s.kind == Kind.DATABASE), None)
    cluster = default_cluster(topo.sites, db.primary if db is not None else None,
                              db.name if db is not None else "claims-db", replication)
    return LabPlan(topology=topo.name, sites=topo.sites, clusters=(cluster,), services=(), quorum=None, tools=(),
                   estate=False)
