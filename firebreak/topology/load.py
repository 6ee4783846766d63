"""Loading a topology file: structure via the schema, then the cross-references.

Every problem in the file is reported at once, one line each, so a person fixes them in one go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firebreak.errors import InputError, Problem
from firebreak.inputs import Lines, bad_name, field_path, load_yaml_model, suggest, validate
from firebreak.topology.model import Failover, Kind, Replication, Service, Topology
from firebreak.topology.schema import ServiceSpec, TopologySpec

_DATABASE_ONLY = ("primary", "replication", "failover", "doors")


def load_topology(path: Path | str, label: str | None = None) -> Topology:
    """Read and validate a topology file. Raises InputError naming every problem."""
    label = label or str(path)
    spec, lines = load_yaml_model(path, TopologySpec, label)
    return build_topology(spec, label, lines)


def topology_from_dict(data: Any, label: str = "<topology>") -> Topology:
    """Validate an in-memory mapping (tests, generated topologies, the API)."""
    if not isinstance(data, dict):
        raise InputError(Problem(label, "", "expected a mapping at the top"))
    return build_topology(validate(TopologySpec, data, label), label, {})


def build_topology(spec: TopologySpec, label: str, lines: "Lines | dict[tuple, int]") -> Topology:
    problems: list[Problem] = []

    def bad(path: tuple, reason: str) -> None:
        problems.append(Problem(label, field_path(path), reason, lines.get(path)))

    sites: list[str] = []
    for i, site in enumerate(spec.sites):
        if not site.strip():
            bad(("sites", i), "site name must not be empty")
        elif bad_name(site):
            bad(("sites", i), f"site name {bad_name(site)}")
        elif site in sites:
            bad(("sites", i), f"site '{site}' is listed twice")
        else:
            sites.append(site)
    names = list(spec.services)

    for name, svc in spec.services.items():
        at = ("services", name)
        if bad_name(name):
            bad(at, f"service name {bad_name(name)}")
        for site, count in svc.replicas.items():
            if site not in sites:
                bad(at + ("replicas", site), f"unknown site '{site}'{suggest(site, sites)}")
        if sum(svc.replicas.values()) == 0:
            bad(at + ("replicas",), "no instances anywhere; give at least one site a count above 0")
        for field in ("depends_on", "recovery"):
            seen: set[str] = set()
            for i, dep in enumerate(getattr(svc, field)):
                if dep == name:
                    bad(at + (field, i), f"'{name}' cannot list itself")
                elif dep not in spec.services:
                    bad(at + (field, i), f"unknown service '{dep}'{suggest(dep, names)}")
                elif dep in seen:
                    bad(at + (field, i), f"'{dep}' is listed twice")
                seen.add(dep)
        if svc.kind == "database":
            if svc.primary is None:
                bad(at + ("primary",), "a database needs a primary site")
            elif svc.primary not in sites:
                bad(at + ("primary",), f"unknown site '{svc.primary}'{suggest(svc.primary, sites)}")
            elif svc.replicas.get(svc.primary, 0) < 1:
                bad(at + ("primary",), f"primary site '{svc.primary}' is not among the database's replicas; "
                                       f"add replicas.{svc.primary}: 1 or choose one of "
                                       f"{', '.join(s for s, n in svc.replicas.items() if n > 0) or 'its sites'}")
            if svc.replication == "quorum" and svc.primary in sites:
                others = [s for s, n in svc.replicas.items() if n > 0 and s != svc.primary]
                if len(others) < 2:
                    # ANY 1 of the standbys in one other site waits for that site as one named
                    # standby does and buys nothing over sync. Refused here, where check, the lab
                    # and deploy all read topologies.
                    bad(at + ("replication",), f"quorum commit needs standbys in at least two sites besides the "
                                               f"primary's (standbys in {len(others)}); add a site or declare "
                                               "replication: sync")
        else:
            for field in _DATABASE_ONLY:
                if getattr(svc, field) is not None:
                    bad(at + (field,), f"only valid for kind 'database' (this service is kind '{svc.kind}')")

    if not problems:
        cycle = find_cycle({n: list(s.depends_on) for n, s in spec.services.items()})
        if cycle:
            bad(("services", cycle[0], "depends_on"), "dependency cycle: " + " -> ".join(cycle))
    if problems:
        raise InputError(problems)

    return Topology(
        name=spec.name,
        description=spec.description,
        sites=tuple(sites),
        services={name: _service(name, svc) for name, svc in spec.services.items()},
        source=label,
    )


def _service(name: str, svc: ServiceSpec) -> Service:
    return Service(
        name=name,
        kind=Kind(svc.kind),
        replicas=dict(svc.replicas),
        needs=svc.needs,
        depends_on=tuple(svc.depends_on),
        recovery=tuple(svc.recovery),
        primary=svc.primary,
        replication=Replication(svc.replication or "async"),
        failover=Failover(svc.failover or "manual"),
        doors=bool(svc.doors),
        description=svc.description,
    )


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a], or None. Iterative, so deep graphs are fine."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in graph}
    for root in graph:
        if color[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        trail: list[str] = [root]
        color[root] = GREY
        while stack:
            node, i = stack[-1]
            edges = graph.get(node, [])
            if i < len(edges):
                stack[-1] = (node, i + 1)
                nxt = edges[i]
                if color.get(nxt, BLACK) == GREY:
                    return trail[trail.index(nxt):] + [nxt]
                if color.get(nxt) == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, 0))
                    trail.append(nxt)
            else:
                color[node] = BLACK
                stack.pop()
                trail.pop()
    return None
