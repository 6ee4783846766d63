"""Running a drill on whatever lab is up: the one place that chooses the runner a lab gets.

A lab built from a topology (`lab up --topology`) is drilled by estate_run (many clusters and
services, judged against check's predictions); the default lab by cluster_run (one cluster,
judged against the scenario's objectives). Both drive their faults through harness.py. Callers
(the CLI, the benchmarks, the demo) call `run` here and never pick a runner themselves.
"""

from __future__ import annotations

from pathlib import Path

from firebreak.drill import cluster_run, estate_run
# What a caller of the drills needs besides `run`: the same functions as the harness's.
from firebreak.drill.harness import Progress, heal_on_sigterm, set_frozen, wait_healthy
from firebreak.drill.scenario import Scenario
from firebreak.errors import InputError, Problem
from firebreak.lab import lab

__all__ = ["run", "heal_on_sigterm", "set_frozen", "wait_healthy"]


def run(scenario: Scenario, report_dir: Path, progress: Progress = lambda m: None, label: str | None = None,
        chaos: tuple[int, int] | None = None) -> dict:
    """Run a scenario against the lab that is up and return its report (also written to
    report_dir). `label` names the scenario in errors (its file, say); `chaos`: (seed, minutes)
    of the chaos plan the scenario is, for the report's chaos summary (the default lab only)."""
    if lab.status().get("estate"):
        if chaos is not None:
            raise InputError(Problem("lab", "", "a chaos drill runs on the default three-site lab; this one was "
                                                "built from a topology (`firebreak lab up` without --topology)"))
        return estate_run.run(scenario, report_dir, progress, label)
    return cluster_run.run(scenario, report_dir, progress, label, chaos=chaos)
