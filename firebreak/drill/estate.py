"""A drill on an estate: `check`'s predictions against what the probes observed, and each
cluster's write history. Pure: histories in, the report's `services` and `clusters` out.

Before the fault, `check`'s analysis says what losing the faulted sites does to every service of
the topology (up, degraded, down). During the drill each service is observed where a person
would see it: plain services through every surviving site's front door, databases by an
ordinary client's writes through a surviving site's database door, the quorum (etcd) by reads,
ops tools by their consoles. A service is observed

* down when, through some surviving site, it went unanswered for longer than the failover
  objective (or never answered again);
* degraded when it kept answering but fewer of its instances survive than it needs, or
  something it depends on was observed degraded;
* up otherwise.

A service predicted up (or degraded) but observed down fails the drill, and so does one predicted
down that kept answering; the report names the service and the reason. A mismatch between up and
degraded is reported (as_predicted false) but does not fail it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from firebreak.drill import checks
from firebreak.drill.workload import Op
from firebreak.topology import Topology

PROBE = "probe"      # Op.kind of a probe: key = the service, site = where it was asked from
ANY_SITE = "*"       # a probe not tied to one site's door (etcd reads)


@dataclass(frozen=True)
class Observation:
    state: str                 # up | degraded | down
    unanswered_s: float | None  # the longest time it went unanswered through one surviving site
    why: str


def predictions(topology: Topology, lost: Iterable[str]) -> dict[str, str]:
    """What `check` says losing `lost` does to every service of the topology."""
    from firebreak.readiness.analysis import analyse

    lost = tuple(dict.fromkeys(lost))
    if not lost:
        return {name: "up" for name in topology.services}
    return dict(analyse(topology, lost).states)


def longest_unanswered(probes: list[Op], since: float, until: float) -> float:
    """The longest stretch of [since, until] with no successful probe (answered ones by completion)."""
    oks = sorted(o.complete for o in probes if o.outcome == "ok" and since <= o.complete <= until)
    edges = [since, *oks, until]
    return max((b - a for a, b in zip(edges, edges[1:])), default=until - since)


def observe(topology: Topology, probes: Mapping[str, list[Op]], window: tuple[float, float],
            surviving: list[str], objective: float) -> dict[str, Observation]:
    """Each service's observed state over the fault `window`. `probes`: service -> its probes
    (plain services: one per surviving door per round; databases: the ordinary client's writes as
    probes; quorum and tools: their own), each Op's site the site it was asked through."""
    since, until = window
    out: dict[str, Observation] = {}
    for name in _dependency_order(topology):
        svc = topology.services[name]
        ops = probes.get(name, [])
        by_site: dict[str, list[Op]] = {}
        for o in ops:
            if o.site in surviving or o.site == ANY_SITE:
                by_site.setdefault(o.site, []).append(o)
        if not by_site:
            runs = any(s in surviving for s in svc.sites())
            out[name] = (Observation("up", None, "not observed") if runs
                         else Observation("down", None, "not observed: no instance in a surviving site"))
            continue
        gaps = {site: longest_unanswered(site_ops, since, until) for site, site_ops in by_site.items()}
        worst_site, worst = max(gaps.items(), key=lambda kv: kv[1])
        where = "" if worst_site == ANY_SITE else f" through {worst_site}"
        if worst > objective:
            answered_again = any(o.outcome == "ok" and o.complete > since for o in by_site[worst_site])
            out[name] = Observation("down", round(worst, 3),
                                    f"unanswered{where} for {worst:.2f} s" + ("" if answered_again
                                                                              else ", never answered again"))
            continue
        alive = sum(n for s, n in svc.replicas.items() if s in surviving)
        weak = [d for d in svc.depends_on if out.get(d) and out[d].state == "degraded"]
        if alive < svc.needs:
            state, why = "degraded", f"answered, but {alive} of the {svc.needs} instances it needs survive"
        elif weak:
            state, why = "degraded", f"answered, but depends on {weak[0]}, which is degraded"
        else:
            state, why = "up", f"answered{where or ' everywhere'}, longest wait {worst:.2f} s"
        out[name] = Observation(state, round(worst, 3), why)
    return out


def compare(predicted: Mapping[str, str], observed: Mapping[str, Observation],
            objective: float) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """The report's `services`, the details behind them, and the failures: a service predicted
    up or degraded that went unanswered longer than the objective, or one predicted down that
    kept answering."""
    services, details, failures = {}, {}, []
    for name, p in predicted.items():
        o = observed.get(name)
        if o is None:
            continue
        services[name] = {"predicted": p, "observed": o.state, "as_predicted": p == o.state}
        details[name] = {"unanswered_s": o.unanswered_s, "why": o.why}
        if p in ("up", "degraded") and o.state == "down":
            failures.append(f"{name}: predicted {p}, observed down: {o.why} (objective {objective:g} s)")
        elif p == "down" and o.state != "down":
            failures.append(f"{name}: predicted down, but it kept answering ({o.why})")
    return services, details, failures


def clusters_doc(histories: Mapping[str, list[Op]], stored: Mapping[str, set[str]],
                 faults: list[tuple[str, str, float, float]], kind: str = "sql") -> dict[str, dict]:
    """The report's `clusters`: per cluster, its write unavailability (the worst fault's), and its
    acknowledged and lost writes, from its ordinary client's history and the keys found after."""
    out = {}
    for name, ops in histories.items():
        acks = checks.Acks(ops, kind)
        rtos = [acks.rto(since) for _, _, since, _ in faults]
        out[name] = {
            "write_unavailability_s": (None if any(r is None for r in rtos)
                                       else round(max(rtos, default=0.0), 3)),
            "acked_writes": len(checks.acked(ops, kind)),
            "acked_lost": len(checks.lost_writes(ops, stored.get(name, set()), kind)),
        }
    return out


def as_probes(ops: list[Op], kind: str = "sql") -> list[Op]:
    """An ordinary client's writes, seen as probes of its database (acknowledged = answered)."""
    from dataclasses import replace
    return [replace(o, kind=PROBE) for o in ops if o.kind == kind]


def _dependency_order(topology: Topology) -> list[str]:
    seen: dict[str, None] = {}

    def visit(name: str) -> None:
        if name in seen:
            return
        for dep in topology.services[name].depends_on:
            visit(dep)
        seen[name] = None
    for name in topology.services:
        visit(name)
    return list(seen)


def report(*, scenario, histories: Mapping[str, list[Op]], stored: Mapping[str, set[str]],
           probes: Mapping[str, list[Op]], topology: Topology, predicted: Mapping[str, str],
           faulted: list[str], sites: list[str], start: float, end: float,
           faults: list[tuple[str, str, float, float]], silenced: Mapping[str, str | None],
           disagreements: list[str] | None) -> dict:
    """The drill report of an estate: the usual keys (verdict, failures, write unavailability,
    acknowledged and lost writes over every cluster, objectives), plus `services` (predicted,
    observed, as_predicted) and `clusters` (per cluster unavailability and writes)."""
    from firebreak.drill import objectives as objs

    objective = scenario.objectives.max_write_unavailability_s
    clusters = clusters_doc(histories, stored, faults)
    window = (min((f[2] for f in faults), default=start), max((f[3] for f in faults), default=end))
    surviving = [s for s in sites if s not in faulted]
    every_probe = {**{k: list(v) for k, v in probes.items()}, **{c: as_probes(ops) for c, ops in histories.items()}}
    observed = observe(topology, every_probe, window, surviving, objective)
    services, details, failures = compare(predicted, observed, objective)
    per_fault = []
    acks = [checks.Acks(ops, "sql") for ops in histories.values()]   # indexed once, asked per fault
    for kind, site, since, healed in faults:
        rtos = [a.rto(since) for a in acks]
        rto = None if any(r is None for r in rtos) or not rtos else max(rtos)
        per_fault.append({"fault": kind, "site": site, "at_s": round(since - start, 3),
                          "healed_at_s": round(healed - start, 3), "write_rto_s": None if rto is None else round(rto, 3),
                          "ops_during_fault": {}, "start_wall": None, "end_wall": None})
    gaps = [checks.max_write_gap(ops, start, end, "sql") for ops in histories.values() if checks.acked(ops, "sql")]
    max_gap = round(max(gaps, default=end - start), 3)
    acked_lost = sum(c["acked_lost"] for c in clusters.values())
    brains = [name for name, ops in histories.items() if checks.split_brain(as_writes(ops))]
    for name, c in clusters.items():
        if c["acked_lost"]:
            failures.append(f"{name}: {c['acked_lost']} acknowledged writes are not in the database")
        if not c["acked_writes"]:
            failures.append(f"{name}: no write was ever acknowledged")
    failures += [f"{name}: two primaries acknowledged writes in overlapping intervals" for name in brains]
    failures += [f"replicas disagree after the heal: {d}" for d in disagreements or []]
    outcomes = objs.evaluate(scenario.objectives, {"faults": per_fault, "max_write_gap_s": max_gap,
                                                   "acked_lost": acked_lost, "read_failures": {}, "ops_actions": {}})
    failures += [o.reason for o in outcomes if not o.met]
    rtos = [f["write_rto_s"] for f in per_fault]
    return {
        "verdict": "fail" if failures else "pass",
        "failures": failures,
        "scenario": scenario.model_dump(),
        "topology": topology.name,
        "faulted_sites": list(faulted),
        "acked_writes": sum(c["acked_writes"] for c in clusters.values()),
        "unknown_writes": sum(1 for ops in histories.values() for o in ops if o.kind == "sql" and o.outcome == "unknown"),
        "acked_lost": acked_lost,
        "lost_keys": [],
        "duplicates": 0,
        "write_rto_s": max((r for r in rtos if r is not None), default=None),
        "max_write_gap_s": max_gap,
        "objectives": [o.as_dict() for o in outcomes],
        "consistency": {"checked": disagreements is not None, "problems": list(disagreements or [])},
        "read_failures": {}, "reads": 0,
        "split_brain": bool(brains), "split_brain_evidence": [],
        "primaries": [],
        "ops_actions": {}, "ops_failed": [],
        "faults": per_fault,
        "power_cut_mode": {s: m for s, m in silenced.items() if m},
        "duration_s": round(end - start, 3),
        "ordinary_client": None,
        "services": services,
        "service_details": details,
        "clusters": clusters,
    }


def as_writes(ops: list[Op], kind: str = "sql") -> list[Op]:
    from dataclasses import replace
    return [replace(o, kind="write") for o in ops if o.kind == kind]


def chart_ops(histories: Mapping[str, list[Op]], probes: Mapping[str, list[Op]],
              services: Mapping[str, dict]) -> list[Op]:
    """What the report's timeline draws: each cluster's writes and each service's answers, one
    series each, the service's predicted and observed states in its label."""
    from dataclasses import replace
    out = [replace(o, kind="write", site=f"{name} writes") for name, ops in histories.items() for o in ops
           if o.kind == "sql"]
    for name, ops in probes.items():
        s = services.get(name)
        label = f"{name} (predicted {s['predicted']}, observed {s['observed']})" if s else name
        out += [replace(o, kind="write", site=label) for o in ops]
    return out
