"""`firebreak drill chaos`: a random drill drawn from the whole fault catalogue, and its summary.

The planner is pure: (seed, minutes, sites, can_filter) -> a Scenario, the same one for the same
seed, so a failing chaos drill is replayed by giving its seed again. Each fault is drawn from a
deck (every kind once per round, rounds shuffled: given enough minutes, every kind is drawn),
aimed at a role or a random site, held for a drawn time, healed by an explicit step that also
waits until the lab is healthy again and checks that the replicas agree, and followed by a drawn
quiet wait. Drawing stops when the next fault would not fit in the minutes.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

from firebreak.drill.objectives import Objectives
from firebreak.drill.scenario import FaultStep, HealStep, Scenario, WaitStep
from firebreak.errors import InputError, Problem

# The kinds a chaos drill draws from; a pause of PostgreSQL alone is a kind of its own.
KINDS = ("power-cut", "isolate", "partition", "pause", "pause-postgres", "flap", "ops-tools", "bad-value")
# Faults that need the lab to filter packets (nftables): not drawn when it cannot.
NETWORK = frozenset({"isolate", "partition", "flap"})
# Faults that may fail the primary over: the old primary must rejoin before the next fault.
FAILOVER = frozenset({"power-cut", "isolate", "partition", "pause", "pause-postgres", "flap"})

HOLD_S = (4.0, 20.0)          # how long a fault is held
FLAP_HOLD_S = (20.0, 40.0)
FLAP_PERIOD_S = (1.0, 3.0)    # at least scenario.MIN_PERIOD (0.8 s)
QUIET_S = {True: (25.0, 40.0), False: (5.0, 15.0)}  # after a fault that may have failed over / any other
# The runner's own time around a fault, which the plan budgets but does not sleep: powering a
# site back on, a pause's wait for writes, the heal's wait until the lab is healthy again.
ALLOWANCE_S = {True: 20.0, False: 5.0}
LEAD_S = 5.0                  # the workload's warm-up before the first fault and the final heal
SETTLE_S = 180.0              # a heal waits at most this long for the lab to be healthy again

ROLE_PAIRS = (("primary", "sync-standby"), ("primary", "etcd-leader"))
SINGLE_ROLES = ("primary", "sync-standby")


def kinds_for(can_filter: bool) -> tuple[str, ...]:
    """The kinds the lab can produce: without nftables (not root), no network faults."""
    return tuple(k for k in KINDS if can_filter or k not in NETWORK)


def kind_of(step: FaultStep) -> str:
    """A fault step's chaos kind: its fault, `pause-postgres` for a pause of PostgreSQL alone."""
    return "pause-postgres" if step.fault == "pause" and step.component == "postgres" else step.fault


def _span(rng: random.Random, bounds: tuple[float, float]) -> float:
    return round(rng.uniform(*bounds), 1)


def _fault(rng: random.Random, kind: str, sites: Sequence[str]) -> FaultStep:
    """One fault of `kind`, aimed at a role or a random site, with its drawn hold."""
    target = rng.choice(list(SINGLE_ROLES) + list(sites))
    if kind == "partition":
        if rng.random() < 0.5:
            site, peer = rng.choice(ROLE_PAIRS)
        else:
            site, peer = rng.sample(list(sites), 2)
        return FaultStep(fault="partition", site=site, peer=peer, duration=_span(rng, HOLD_S))
    if kind == "flap":
        return FaultStep(fault="flap", site=target, duration=_span(rng, FLAP_HOLD_S), period=_span(rng, FLAP_PERIOD_S))
    if kind == "pause-postgres":
        return FaultStep(fault="pause", site=target, component="postgres", duration=_span(rng, HOLD_S))
    return FaultStep(fault=kind, site=target, duration=_span(rng, HOLD_S))


def step_seconds(step: FaultStep | HealStep | WaitStep) -> float:
    """What the plan budgets for one step: a fault's hold and the runner's allowance around it
    (power on, the heal's wait for health), a wait's seconds, nothing for the heal itself. Pure."""
    if isinstance(step, FaultStep):
        return step.hold + ALLOWANCE_S[kind_of(step) in FAILOVER]
    if isinstance(step, WaitStep):
        return step.wait
    return 0.0


def planned_seconds(scenario: Scenario) -> float:
    """The seconds a chaos plan budgets, warm-up included: at most its minutes. Pure."""
    return round(LEAD_S + sum(step_seconds(s) for s in scenario.steps), 3)


def plan(seed: int, minutes: int, sites: Sequence[str], can_filter: bool = True,
         objectives: Objectives | None = None) -> Scenario:
    """The chaos drill for `seed` on a lab of `sites` that fits in `minutes`. Pure: the same
    arguments give the same plan. InputError (naming --minutes) when not even one fault fits."""
    if minutes < 1:
        raise InputError(Problem("--minutes", "", f"must be a whole number of minutes, 1 or more; got {minutes}"))
    if len(sites) < 2:
        raise InputError(Problem("lab", "", f"a chaos drill needs at least two sites; the lab has {len(sites)}"))
    rng = random.Random(seed)
    kinds = kinds_for(can_filter)
    used = LEAD_S
    steps: list[FaultStep | HealStep | WaitStep] = []
    deck: list[str] = []
    while True:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        kind = deck.pop()
        fault = _fault(rng, kind, sites)
        quiet = WaitStep(wait=_span(rng, QUIET_S[kind in FAILOVER]))
        block = [fault, HealStep(heal="all", settle=SETTLE_S), quiet]
        cost = sum(step_seconds(s) for s in block)
        if round(used + cost, 3) > minutes * 60:
            break
        used += cost
        steps += block
    if not steps:
        raise InputError(Problem("--minutes", "", f"{minutes} min fit no fault: seed {seed}'s first takes "
                                 f"{cost + LEAD_S:.0f} s with its heal and quiet wait; give more minutes"))
    kinds_drawn = sorted({kind_of(s) for s in steps if isinstance(s, FaultStep)})
    return Scenario(
        name=f"chaos seed {seed} {minutes} min",
        description=(f"{sum(isinstance(s, FaultStep) for s in steps)} faults drawn by seed {seed} from "
                     f"{', '.join(kinds)}; drawn: {', '.join(kinds_drawn)}. Each held, healed, the lab healthy "
                     "and its replicas checked, then a quiet wait."),
        objectives=objectives or Objectives(), steps=steps)


def summary(scenario: Scenario, report: Mapping[str, Any], seed: int, minutes: int) -> dict:
    """The chaos drill in a few figures, from its report: faults injected by kind with the worst
    write unavailability of each (None: writes never resumed after one of them), acknowledged
    writes, lost, split brain, and the checks after each heal. Pure."""
    steps = [s for s in scenario.steps if isinstance(s, FaultStep)]
    by_kind: dict[str, dict] = {}
    for step, fault in zip(steps, report["faults"]):
        d = by_kind.setdefault(kind_of(step), {"injected": 0, "worst_write_unavailability_s": 0.0})
        d["injected"] += 1
        rto, worst = fault["write_rto_s"], d["worst_write_unavailability_s"]
        d["worst_write_unavailability_s"] = None if rto is None or worst is None else max(worst, rto)
    checks = [e for e in report.get("events", []) if e["kind"] == "check"]
    return {
        "seed": seed, "minutes": minutes, "faults": len(report["faults"]),
        "by_kind": dict(sorted(by_kind.items())),
        "acked_writes": report["acked_writes"], "acked_lost": report["acked_lost"],
        "split_brain": report["split_brain"],
        "checks": len(checks), "checks_failed": sum(1 for e in checks if e.get("problems")),
    }
