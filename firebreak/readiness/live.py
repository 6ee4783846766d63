"""The running estate as a topology, and where it differs from the declared one. Pure.

`firebreak check --live CONSOLE_URL` reads a console's /api/estate (which site runs which etcd
member, cluster members, service instances and agents, as the agents see them now) and turns it
into a topology that `check` analyses like a file. With `--against FILE` it also lists the drift:
every place where the declared topology and the running estate disagree, because what was
believed redundant is what failed in October 2022.

Names the running estate cannot know (what the file calls etcd and the ops tools, `needs`,
descriptions) come from the declared file when there is one.
"""

from __future__ import annotations

from typing import Any, Mapping

from firebreak.control.detector import majority
from firebreak.topology import Failover, Kind, Replication, Service, Topology

LIVE_STATES = ("running", "streaming")


def live_topology(doc: Mapping[str, Any], declared: Topology | None = None, label: str = "<live>") -> Topology:
    """The estate described by a console's /api/estate, as a topology. Built from the model
    directly: a service with no instance running anywhere is a fact here (down in every
    scenario), where a file saying so would be refused as a typo."""
    sites = tuple(doc["sites"])
    named = declared.services if declared is not None else {}
    quorum = next((n for n, s in named.items() if s.kind == Kind.QUORUM), "etcd")
    tools = [n for n, s in named.items() if s.kind == Kind.OPS_TOOL] or ["site-agent", "ops-console"]
    agents = {s: 1 if ok else 0 for s, ok in doc.get("agents", {}).items()}

    def needs(name: str, default: int = 1) -> int:
        return named[name].needs if name in named else default

    services: dict[str, Service] = {
        quorum: Service(quorum, Kind.QUORUM, {s: 1 if ok else 0 for s, ok in doc.get("etcd", {}).items()}),
    }
    for i, tool in enumerate(tools):
        services[tool] = Service(tool, Kind.OPS_TOOL, dict(agents),
                                 needs=needs(tool, majority(len(sites)) if i == 0 else 1),
                                 depends_on=(quorum,) if i == 0 else (tools[0],))
    for name, c in doc.get("clusters", {}).items():
        replicas = {s: 0 for s in sites}
        for m in c.get("members", {}).values():
            if m.get("site") in replicas and m.get("state") in LIVE_STATES:
                replicas[m["site"]] += 1
        primary = c.get("primary_site") if replicas.get(c.get("primary_site"), 0) else None
        services[name] = Service(name, Kind.DATABASE, replicas, depends_on=(quorum,), recovery=(tools[-1],),
                                 primary=primary,
                                 replication=_replication(c),
                                 # The agents fail every protected cluster over (frozen: Patroni's timers).
                                 failover=Failover.AUTO, doors=bool(c.get("doors")))
    for name, svc in doc.get("services", {}).items():
        deps = tuple(d for d in [*svc.get("databases", []), *svc.get("calls", [])] if d != name)
        services[name] = Service(name, Kind.SERVICE, {s: 1 if ok else 0 for s, ok in svc.get("instances", {}).items()},
                                 needs=needs(name), depends_on=deps)
    for name, svc in list(services.items()):
        missing = [d for d in svc.depends_on if d not in services]
        if missing:  # a dependency nothing runs: known to be down
            for d in missing:
                services[d] = Service(d, Kind.SERVICE, {}, description="named as a dependency; not running")
    title = f"{declared.name if declared is not None else 'estate'} (running, seen from {doc.get('site')})"
    return Topology(name=title, sites=sites, services=services, source=label)


def drift(declared: Topology, live: Topology) -> list[dict]:
    """Where the declared topology and the running estate disagree: one entry per service and
    field, with both values. Empty when they match."""
    out: list[dict] = []

    def add(service: str, field: str, want: Any, have: Any) -> None:
        out.append({"service": service, "field": field, "declared": want, "running": have})

    for name, d in declared.services.items():
        r = live.services.get(name)
        if r is None:
            add(name, "service", "declared", "not running anywhere")
            continue
        if d.kind != r.kind:
            add(name, "kind", str(d.kind), str(r.kind))
            continue
        for site in declared.sites:
            want, have = d.replicas.get(site, 0), r.replicas.get(site, 0)
            if want != have:
                add(name, f"replicas.{site}", want, have)
        if d.kind == Kind.DATABASE:
            if d.primary != r.primary:
                add(name, "primary", d.primary, r.primary)
            if d.replication != r.replication:
                add(name, "replication", str(d.replication), str(r.replication))
            if d.doors != r.doors:
                add(name, "doors", d.doors, r.doors)
        elif d.kind == Kind.SERVICE and set(d.depends_on) != set(r.depends_on):
            add(name, "depends_on", sorted(d.depends_on), sorted(r.depends_on))
    for name in live.services:
        if name not in declared.services:
            add(name, "service", "not declared", "running")
    return out


def rebalance_plan(declared: Topology, live: Topology) -> list[dict]:
    """The switchovers that put each database's primary back where the declared topology puts
    it. Failovers leave primaries wherever they survived (after a few site losses one site can
    hold them all, the October 2022 shape); a cluster moves back only when its declared site
    runs a living member again. One entry per database whose primary is elsewhere:
    {cluster, from, to, ready, why}; `ready` false says why it cannot move yet."""
    out = []
    for name, d in declared.services.items():
        r = live.services.get(name)
        if d.kind != Kind.DATABASE or d.primary is None or r is None or r.kind != Kind.DATABASE:
            continue
        if r.primary == d.primary:
            continue
        why = ""
        if r.primary is None:
            why = "it has no primary now: a failover is due, not a switchover"
        elif r.replicas.get(d.primary, 0) == 0:
            why = f"no member of it runs in {d.primary} yet"
        out.append({"cluster": name, "from": r.primary, "to": d.primary, "ready": not why, "why": why})
    return out


def _replication(cluster: dict) -> Replication:
    """A cluster's replication as its agents report it (`replication`; agents older than quorum
    commit said only `synchronous`)."""
    if cluster.get("replication") in {r.value for r in Replication}:
        return Replication(cluster["replication"])
    return Replication.SYNC if cluster.get("synchronous") else Replication.ASYNC
