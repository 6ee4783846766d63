"""Each service's own outages, for the ledger: compensation is per service, so a site that burns
for five days must not read as five days of outage for a service that failed over in two seconds.
Pure: the coordinator steps it with what it decided and saw; it says what to write.

A cluster is out from the start of the incident that made it act (its primary's or its
synchronous standby's site lost) until its decision is "alive" again; a refused failover keeps it
out. A service is out while a database it writes to is out, while a service it calls is out, or
while none of its instances runs in a living site. Each outage is written when it opens (end
null: claims see it as still running) and again when it closes, under the same key.

An outage whose root cause (the cluster, or the service without an instance) lies in a site
under a declared drill when it opens is that drill's (control/drills.py): written with `"source":
"drill"` and the drill's id, kept so until it closes, and the services out because of it with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from firebreak.control.failover import ClusterState
from firebreak.control.incidents import DRILL_SOURCE, SOURCE, agents_drill

KIND = "service-outage"


@dataclass(frozen=True)
class Open:
    service: str
    start: float
    cause: str
    drill: str = ""  # the declared drill it opened under, "" for a real outage


@dataclass(frozen=True)
class Write:
    service: str
    start: float
    end: float | None
    cause: str
    drill: str = ""

    def entry(self, site: str) -> dict:
        e = {"service": self.service, "start": self.start, "end": self.end, "cause": self.cause,
             "kind": KIND, "source": DRILL_SOURCE if self.drill else SOURCE, "recorded_by": site}
        if self.drill:
            e["drill"] = self.drill
        return e


def cluster_out(cluster: ClusterState, dead: set[str], site_of: Mapping[str, str],
                refused: bool = False) -> str | None:
    """Why a cluster cannot take acknowledged writes now, or None: no leader, a leader in a dead
    site, a synchronous standby in a dead site (every commit waits for it), or a refused failover."""
    if refused:
        return "its failover was refused"
    if cluster.leader is None:
        return "no primary: a new one is being elected"
    if site_of.get(cluster.leader, cluster.leader) in dead:
        return f"its primary's site {site_of.get(cluster.leader, cluster.leader)} is lost"
    lost = [n for n in cluster.sync_standbys if site_of.get(n, n) in dead]
    if lost and cluster.sync_leader == cluster.leader:
        return f"its synchronous standby's site {site_of.get(lost[0], lost[0])} is lost"
    return None


def causes(clusters_out: Mapping[str, str], no_instance: Mapping[str, str],
           databases: Mapping[str, Iterable[str]], calls: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, str]]:
    """service (clusters included) -> (why it is out now, the cluster or service it is out
    because of). `clusters_out`: cluster -> why; `no_instance`: service -> why;
    `databases`/`calls`: each service's dependencies."""
    out = {name: (why, name) for name, why in {**clusters_out, **no_instance}.items()}
    changed = True
    while changed:  # calls may chain (payments -> login -> users-db): a fixed point, not recursion
        changed = False
        for name in sorted(set(databases) | set(calls)):
            if name in out:
                continue
            dep = next((d for d in [*databases.get(name, ()), *calls.get(name, ())] if d in out), None)
            if dep is not None:
                out[name] = (f"{dep} is out: {out[dep][0]}", out[dep][1])
                changed = True
    return out


def adopt(values: Iterable[str]) -> dict[str, Open]:
    """The outages still open in the ledger (its entries' JSON, written by an earlier coordinator):
    a new coordinator carries them on, so each one closes when its service is back, not never.
    The newest per service. Only the agents' own (those they recorded under a declared drill
    stay the drill's): the drill runner's entries are its record, never an outage to carry on."""
    out: dict[str, Open] = {}
    for raw in values:
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("kind") != KIND or e.get("end") is not None:
            continue
        drill = agents_drill(e)
        if e.get("source", SOURCE) != SOURCE and drill is None:
            continue
        try:
            o = Open(str(e["service"]), float(e["start"]), str(e.get("cause", "")), drill or "")
        except (KeyError, TypeError, ValueError):
            continue
        if o.service not in out or o.start > out[o.service].start:
            out[o.service] = o
    return out


def step(open_: Mapping[str, Open], out_now: Mapping[str, tuple[str, str]], now: float,
         started: Mapping[str, float], drills: Mapping[str, str] | None = None) -> tuple[dict[str, Open], list[Write]]:
    """New open outages and what to write. `out_now`: causes(); `started`: when the outage of a
    root cause began, if earlier than now (the incident's start, for a cluster that lost its
    primary's site); a dependent service's outage starts with its root's. `drills`: root cause ->
    the drill declared over its site now; an outage that opens because of it is the drill's (a
    dependent's root already open: that root's)."""
    drills = drills or {}
    still: dict[str, Open] = {}
    writes: list[Write] = []
    for name, (cause, root) in out_now.items():
        if name in open_:
            o = open_[name]
            if o.cause != cause:
                o = replace(o, cause=cause)
                writes.append(Write(name, o.start, None, cause, o.drill))
            still[name] = o
        else:
            begun = open_[root].start if root in open_ else started.get(root, now)
            drill = open_[root].drill if root in open_ else drills.get(root, "")
            o = Open(name, min(begun, now), cause, drill)
            still[name] = o
            writes.append(Write(name, o.start, None, cause, drill))
    for name, o in open_.items():
        if name not in out_now:
            writes.append(Write(name, o.start, now, o.cause, o.drill))
    return still, writes
