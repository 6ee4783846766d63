"""Drill objectives: what a drill must show to pass, and the judgement against them. Pure.

The defaults are the product's own promise, not "writes came back eventually": a few seconds of
write unavailability, no longer gap than that (plus half a second) even while the lost site
returns, and nothing lost or failed where nothing should fail. So Patroni alone, with its
20-30 s failover, fails a power-cut drill, and the report says which objective it missed and by
how much. A scenario file (`objectives:`) or the CLI's `--max-*` flags set other limits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

# The promise: reference-service failover p95 under 3 s (docs/BENCHMARKS.md), a site's return
# costing at most half a second more.
DEFAULT_WRITE_UNAVAILABILITY_S = 3.0
RETURN_ALLOWANCE_S = 0.5


class Objectives(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_write_unavailability_s: float = Field(
        default=DEFAULT_WRITE_UNAVAILABILITY_S, gt=0, le=600,
        description="longest time, after any fault, until a write sent after it is acknowledged")
    max_write_gap_s: float | None = Field(
        default=None, gt=0, le=600,
        description="longest stretch of the drill with no write acknowledged "
                    f"(default: max_write_unavailability_s + {RETURN_ALLOWANCE_S:g})")
    max_acked_lost: int = Field(default=0, ge=0, description="acknowledged writes missing at the end")
    max_read_failures: int = Field(default=0, ge=0, description="failed reads in sites not under a fault")
    max_failed_ops: int = Field(default=0, ge=0, description="failed ops actions from sites not under a fault")

    def gap_limit(self) -> float:
        if self.max_write_gap_s is not None:
            return self.max_write_gap_s
        return round(self.max_write_unavailability_s + RETURN_ALLOWANCE_S, 3)


@dataclass(frozen=True)
class Outcome:
    """One objective judged: `observed` None means the thing never happened (writes never resumed)."""

    objective: str
    limit: float
    observed: float | None
    unit: str
    met: bool
    missed_by: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outcome(name: str, limit: float, observed: float | None, unit: str, what: str) -> Outcome:
    met = observed is not None and observed <= limit
    missed_by = None if met or observed is None else round(observed - limit, 3)
    shown = "never" if observed is None else f"{observed:g}{unit}"
    if met:
        reason = f"{what}: {shown}, within the objective of {limit:g}{unit}"
    elif observed is None:
        reason = f"{what}: never (writes did not resume); the objective is {limit:g}{unit}"
    else:
        reason = f"{what}: {shown}, over the objective of {limit:g}{unit} by {missed_by:g}{unit}"
    return Outcome(name, limit, observed, unit.strip(), met, missed_by, reason)


def evaluate(objectives: Objectives, figures: Mapping[str, Any]) -> list[Outcome]:
    """Judge a drill's figures (the verdict's: write_rto_s per fault, max_write_gap_s,
    acked_lost, read_failures per site, ops failures) against its objectives."""
    rtos = [f["write_rto_s"] for f in figures.get("faults", [])]
    worst_rto = None if any(r is None for r in rtos) else max(rtos, default=0.0)
    return [
        _outcome("write_unavailability_s", objectives.max_write_unavailability_s, worst_rto, " s",
                 "write unavailability"),
        _outcome("write_gap_s", objectives.gap_limit(), figures["max_write_gap_s"], " s", "longest write gap"),
        _outcome("acked_lost", objectives.max_acked_lost, figures["acked_lost"], "", "acknowledged writes lost"),
        _outcome("read_failures", objectives.max_read_failures, sum(figures["read_failures"].values()), "",
                 "failed reads in sites not under a fault"),
        _outcome("failed_ops", objectives.max_failed_ops,
                 sum(d["tried"] - d["ok"] for d in figures["ops_actions"].values()), "",
                 "failed ops actions from sites not under a fault"),
    ]
