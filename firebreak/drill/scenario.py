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

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FaultStep(_Strict):
    fault: Literal["power-cut", "isolate", "degrade", "ops-tools"]
    site: str = Field(description="a site name, or 'primary' / 'sync-standby' for the site whose "
                      "PostgreSQL holds that role when the step runs")
    duration: float = Field(default=0, ge=0, le=600, description="seconds to hold the fault; 0 = until writes resume")
    loss: int = Field(default=0, ge=0, le=100, description="degrade: percent of packets dropped")
    rate_kbit: int = Field(default=0, ge=0, description="degrade: bandwidth limit, kbit/s (0 = none)")
    latency_ms: int = Field(default=0, ge=0, description="degrade: added latency (not available without netem)")


class HealStep(_Strict):
    heal: str = Field(description="a site name, or 'all'")


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


# A step may aim at a role instead of a site: the site whose PostgreSQL holds it when the step runs.
ROLE_TARGETS = {"primary": "primary", "sync-standby": "sync_standby"}


def site_in_role(st: dict, target: str) -> str | None:
    """The site of the default lab (`lab status`) whose PostgreSQL is `target` now, or None."""
    role = ROLE_TARGETS[target]
    if role == "primary":
        return st.get("primary")
    return next((n for n, s in st["sites"].items() if s["postgres"]["role"] == role), None)


def load_scenario(path: Path | str, sites: list[str] | None = None) -> Scenario:
    scenario, _ = load_yaml_model(path, Scenario)
    if sites is not None:
        check_sites(scenario, sites, str(path))
    return scenario


def check_sites(scenario: Scenario, sites: list[str], label: str, net: str = "netns",
                can_filter: bool = True, roles: tuple[str, ...] = tuple(ROLE_TARGETS)) -> None:
    """Check a scenario against the running lab before any step runs: site names (or the `roles`
    it can aim at), and faults the lab's network mode can produce (`can_filter`: nftables is
    usable, i.e. root)."""
    problems = []
    known = list(sites) + list(roles)
    for i, step in enumerate(scenario.steps):
        name = getattr(step, "site", None) or getattr(step, "heal", None)
        field = "site" if isinstance(step, FaultStep) else "heal"
        allowed = known + (["all"] if isinstance(step, HealStep) else [])
        if name is not None and name not in allowed:
            problems.append(Problem(label, f"steps[{i}].{field}",
                                    f"unknown site '{name}'{suggest(name, allowed)}; the lab's sites are "
                                    f"{', '.join(sites)} (or {' or '.join(repr(r) for r in roles)})"))
        if isinstance(step, FaultStep) and step.latency_ms:
            problems.append(Problem(label, f"steps[{i}].latency_ms",
                                    "added latency needs the netem qdisc, which this kernel does not have; "
                                    "use loss and rate_kbit"))
        if isinstance(step, FaultStep) and step.fault != "degrade" and (step.loss or step.rate_kbit):
            problems.append(Problem(label, f"steps[{i}]", "loss and rate_kbit apply only to fault: degrade"))
        if isinstance(step, FaultStep) and step.fault in ("isolate", "degrade") and net != "netns":
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
