"""The JSON readiness report, with the scenarios analysed on every core.

The analysis stays a pure function of the plan and a lost-site set (analysis.analyse); this is
the I/O shell around it for big topologies. The plan is built once, then worker processes are
forked so they share it without copying or pickling. Each worker analyses an interleaved share of
the scenarios and returns each scenario already serialised, with what the summary needs (the
lost sites, whether it fails, its findings by kind), so nothing but bytes crosses back. For
10,000 services x 10 sites with pairs this halves the analysis on two cores; below a few
hundred thousand service-scenarios the forks cost more than they save and it runs in-process.
"""

from __future__ import annotations

import multiprocessing
import os
import orjson

from firebreak.readiness.analysis import Plan, analyse, scenarios, summary_of
from firebreak.readiness.render import scenario_doc
from firebreak.topology.model import Topology

# Below this many service-scenarios, one process is faster than forking.
PARALLEL_FROM = 200_000

_shared: tuple[Plan, list[tuple[str, ...]]] | None = None  # set before forking; read by workers


def _scenario_json(plan: Plan, lost: tuple[str, ...]) -> tuple[bytes, tuple[str, ...], bool, dict[str, int]]:
    r = analyse(plan.topology, lost, plan)
    return orjson.dumps(scenario_doc(r)), r.lost, r.failing, r.kinds()


def _work(share: tuple[int, int]) -> list[tuple[int, tuple]]:
    assert _shared is not None
    plan, lost_sets = _shared
    start, step = share
    return [(i, _scenario_json(plan, lost_sets[i])) for i in range(start, len(lost_sets), step)]


def json_report(topology: Topology, pairs: bool = False, workers: int | None = None) -> tuple[bytes, bool]:
    """The report `check --format json` writes, and whether any scenario fails."""
    global _shared
    plan = Plan(topology)
    lost_sets = scenarios(topology.sites, pairs)
    if workers is None:
        big = len(plan.names) * len(lost_sets) >= PARALLEL_FROM
        workers = min(len(os.sched_getaffinity(0)), len(lost_sets)) if big else 1
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        parts = [_scenario_json(plan, lost) for lost in lost_sets]
    else:
        _shared = (plan, lost_sets)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                done = [row for chunk in pool.map(_work, [(k, workers) for k in range(workers)]) for row in chunk]
        finally:
            _shared = None
        parts = [part for _, part in sorted(done, key=lambda row: row[0])]
    summary = summary_of([(lost, failing, kinds) for _, lost, failing, kinds in parts])
    head = orjson.dumps({"topology": topology.name, "sites": topology.sites})
    out = b"".join([head[:-1], b',"scenarios":[', b",".join(p[0] for p in parts), b'],"summary":',
                    orjson.dumps(summary), b"}\n"])
    return out, summary["verdict"] == "fail"
