"""Drill scenarios: a single fault from the command line, or a scripted sequence from a YAML
file, validated whole before anything runs (like Chaos Toolkit), with errors that name the
step and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from firebreak.drill.objectives import Objectives
from firebreak.errors import InputError, Problem
from firebreak.inputs import load_yaml_model, suggest
from firebreak.lab.procs import PAUSE_COMPONENTS
from firebreak.lab.status import SYNC_ROLES

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# A pause, a flap and bad values always last their duration (a paused primary's writes come back
# only when it is continued; a flap is a pattern in time; bad values do not stop writes at all):
# these are theirs when a step gives none.
DEFAULT_DURATION = {"pause": 8.0, "flap": 60.0, "bad-value": 10.0}
# The shortest flap: each toggle runs nft in a namespace (tens of ms), and a shorter period is a
# lossy link, which degrade already emulates. Halves of 0.4 s are what a flap too fast for the
# default detector's 0.5 s window looks like (bench/drills.py flap-fast).
MIN_PERIOD = 0.8


class FaultStep(_Strict):
    fault: Literal["power-cut", "isolate", "degrade", "ops-tools", "partition", "pause", "flap", "bad-value"]
    site: str = Field(description="a site name, or 'primary' / 'sync-standby' for the site whose "
                      "PostgreSQL holds that role when the step runs; partition: one end of the cut link")
    duration: float = Field(default=0, ge=0, le=600, description="seconds to hold the fault; 0 = until writes "
                            "resume (pause: 8 s, flap: 60 s, bad-value: 10 s when not given; they always last their duration)")
    loss: int = Field(default=0, ge=0, le=100, description="degrade: percent of packets dropped")
    rate_kbit: int = Field(default=0, ge=0, description="degrade: bandwidth limit, kbit/s (0 = none)")
    latency_ms: int = Field(default=0, ge=0, description="degrade: added latency (not available without netem)")
    peer: str | None = Field(default=None, description="partition: the site at the link's other end (or a role)")
    component: str | None = Field(default=None, description="pause: 'postgres' for PostgreSQL alone; "
                                  "not given: every process of the site")
    period: float | None = Field(default=None, gt=0, le=600, description="flap: seconds of one down-and-up cycle "
                                 "(links down for half of it, up for the other half)")

    @property
    def hold(self) -> float:
        """Seconds the step holds its fault (0: until writes resume)."""
        return self.duration or DEFAULT_DURATION.get(self.fault, 0.0)

    @property
    def targets(self) -> list[str]:
        """Every site (or role) the step faults: a partition has two."""
        return [self.site] + ([self.peer] if self.peer is not None else [])


class HealStep(_Strict):
    heal: str = Field(description="a site name, or 'all'")
    settle: float = Field(default=0, ge=0, le=600, description="then wait until the lab is healthy again (at most "
                          "this many seconds; not healthy by then fails the drill) and check that its replicas "
                          "agree (etcd hashes, PostgreSQL timelines); 0 = go on at once")


class WaitStep(_Strict):
    wait: float = Field(ge=0, le=600, description="seconds")


def _step_kind(value: object) -> str | None:
    if isinstance(value, dict):
        for key in ("fault", "heal", "wait"):
            if key in value:
                return f"<{key}>"
        return None
    return f"<{type(value).__name__.removesuffix('Step').lower()}>"


# Tags in <> are dropped from error paths by firebreak.inputs, so errors read steps[2].site.
Step = Annotated[Union[Annotated[FaultStep, Tag("<fault>")], Annotated[HealStep, Tag("<heal>")],
                       Annotated[WaitStep, Tag("<wait>")]],
                 Discriminator(_step_kind, custom_error_type="step_kind",
                               custom_error_message="a step needs one of: fault, heal, wait")]


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    clients: int = Field(default=8, ge=1, le=256)
    rate: float = Field(default=0, ge=0, description="writes per second per client (0 = as fast as answered)")
    baseline: Literal["firebreak", "patroni"] = "firebreak"
    objectives: Objectives = Field(default_factory=Objectives)
    steps: list[Step] = Field(min_length=1)


# A step may aim at a role instead of a site: the site whose PostgreSQL holds it when the step
# runs, or (etcd-leader) whose etcd member leads raft then: a partition of the primary's site from
# etcd's leader is the gray failure that once cost a needless failover.
ROLE_TARGETS = {"primary": "primary", "sync-standby": "sync_standby", "etcd-leader": "etcd_leader"}


def site_in_role(st: dict, target: str) -> str | None:
    """The site of the default lab (`lab status`, with `etcd_leader` added by the caller that
    asks for it) whose PostgreSQL is `target` now, or None. With quorum commit, "sync-standby"
    is the first of the standbys whose acknowledgement counts (lab.status.SYNC_ROLES)."""
    role = ROLE_TARGETS[target]
    if role in ("primary", "etcd_leader"):
        return st.get(role)
    roles = SYNC_ROLES if role == "sync_standby" else (role,)
    return next((n for n, s in st["sites"].items() if s["postgres"]["role"] in roles), None)


def load_scenario(path: Path | str, sites: list[str] | None = None) -> Scenario:
    scenario, _ = load_yaml_model(path, Scenario)
    check_steps(scenario, str(path))
    if sites is not None:
        check_sites(scenario, sites, str(path))
    return scenario


# Fields that belong to one fault each: given with another, they would silently do nothing.
_OWN_FIELDS = {"peer": "partition", "component": "pause", "period": "flap"}


def step_problems(step: FaultStep, where: str, label: str) -> list[Problem]:
    """What is wrong with one fault step on its own, before any lab is asked. Pure."""
    problems = []
    for name, fault in _OWN_FIELDS.items():
        if getattr(step, name) is not None and step.fault != fault:
            problems.append(Problem(label, f"{where}.{name}", f"applies only to fault: {fault}; "
                                    f"remove it or make the step a {fault}"))
    if step.fault == "partition":
        if step.peer is None:
            problems.append(Problem(label, f"{where}.peer", "a partition cuts one link and needs the site at its "
                                    "other end: peer: SITE (or " + " / ".join(repr(r) for r in ROLE_TARGETS) + ")"))
        elif step.peer == step.site:
            problems.append(Problem(label, f"{where}.peer", f"a link joins two different sites; site and peer "
                                    f"are both '{step.site}'"))
    if step.fault == "pause" and step.component is not None and step.component not in PAUSE_COMPONENTS:
        problems.append(Problem(label, f"{where}.component",
                                f"unknown component '{step.component}'{suggest(step.component, PAUSE_COMPONENTS)}; "
                                f"a pause stops {' or '.join(PAUSE_COMPONENTS)} alone, or every process of the "
                                "site when no component is given"))
    if step.fault in DEFAULT_DURATION and "duration" in step.model_fields_set and step.duration == 0:
        problems.append(Problem(label, f"{where}.duration", f"a {step.fault} always lasts its duration; give "
                                f"seconds above 0 (default {DEFAULT_DURATION[step.fault]:g})"))
    if step.fault == "flap":
        if step.period is None:
            problems.append(Problem(label, f"{where}.period", "a flap needs its period: seconds of one "
                                    "down-and-up cycle, e.g. period: 4"))
        elif step.period < MIN_PERIOD:
            problems.append(Problem(label, f"{where}.period", f"must be at least {MIN_PERIOD:g} s, got "
                                    f"{step.period:g} (for a lossier link use fault: degrade)"))
        elif step.period > step.hold:
            problems.append(Problem(label, f"{where}.period", f"a flap of period {step.period:g} s needs a "
                                    f"duration of at least that, got {step.hold:g} s"))
    return problems


def check_steps(scenario: Scenario, label: str) -> None:
    """Every step checked on its own, the whole scenario at once, before any lab is asked: each
    problem names its step and field."""
    problems = [p for i, step in enumerate(scenario.steps) if isinstance(step, FaultStep)
                for p in step_problems(step, f"steps[{i}]", label)]
    if problems:
        raise InputError(problems)


def check_sites(scenario: Scenario, sites: list[str], label: str, net: str = "netns",
                can_filter: bool = True, roles: tuple[str, ...] = tuple(ROLE_TARGETS)) -> None:
    """Check a scenario against the running lab before any step runs: site names (or the `roles`
    it can aim at), and faults the lab's network mode can produce (`can_filter`: nftables is
    usable, i.e. root)."""
    check_steps(scenario, label)
    problems = []
    known = list(sites) + list(roles)
    for i, step in enumerate(scenario.steps):
        if isinstance(step, FaultStep):
            named = [("site", step.site)] + ([("peer", step.peer)] if step.peer is not None else [])
        elif isinstance(step, HealStep):
            named = [("heal", step.heal)]
        else:
            named = []
        allowed = known + (["all"] if isinstance(step, HealStep) else [])
        for field, name in named:
            if name not in allowed:
                problems.append(Problem(label, f"steps[{i}].{field}",
                                        f"unknown site '{name}'{suggest(name, allowed)}; the lab's sites are "
                                        f"{', '.join(sites)} (or {' or '.join(repr(r) for r in roles)})"))
        if isinstance(step, FaultStep) and step.latency_ms:
            problems.append(Problem(label, f"steps[{i}].latency_ms",
                                    "added latency needs the netem qdisc, which this kernel does not have; "
                                    "use loss and rate_kbit"))
        if isinstance(step, FaultStep) and step.fault != "degrade" and (step.loss or step.rate_kbit):
            problems.append(Problem(label, f"steps[{i}]", "loss and rate_kbit apply only to fault: degrade"))
        if isinstance(step, FaultStep) and step.fault in ("isolate", "degrade", "partition", "flap") and net != "netns":
            if not can_filter:
                problems.append(Problem(label, f"steps[{i}].fault", f"{step.fault} needs root (nftables); as a "
                                        "normal user the lab can cut power and stop components only"))
            elif step.fault == "degrade" and step.rate_kbit:
                problems.append(Problem(label, f"steps[{i}].rate_kbit", "a bandwidth limit needs the lab in "
                                        "netns mode (on loopback it would slow every site at once)"))
    if problems:
        raise InputError(problems)


def single(fault: str, site: str, duration: float, clients: int, rate: float, baseline: str,
           loss: int = 0, rate_kbit: int = 0, objectives: Objectives | None = None) -> Scenario:
    """The scenario behind `firebreak drill FAULT --site SITE ...`."""
    return Scenario(name=f"{fault} {site}", clients=clients, rate=rate, baseline=baseline,
                    objectives=objectives or Objectives(),
                    steps=[FaultStep(fault=fault, site=site, duration=duration, loss=loss, rate_kbit=rate_kbit)])


def parse_link(value: str, flag: str = "--sites") -> tuple[str, str]:
    """'A,B' -> (A, B): the two ends of a partition's link, as `drill partition --sites` takes them. Pure."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise InputError(Problem(flag, "", f"expected two sites separated by a comma, e.g. {flag} pangyo,ansan "
                                           f"(or primary,sync-standby); got '{value}'"))
    if parts[0] == parts[1]:
        raise InputError(Problem(flag, "", f"a link joins two different sites; got '{parts[0]}' twice"))
    return parts[0], parts[1]
