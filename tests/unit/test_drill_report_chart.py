"""The drill report's writes-per-second chart data (drill/report.buckets)."""

from firebreak.drill.report import buckets
from firebreak.drill.workload import Op


def op(t, site, outcome="ok", kind="write"):
    return Op(kind, "k", t - 0.01, t, outcome, site)


def test_writes_are_counted_per_second_and_site_acknowledged_or_not():
    ops = [op(100.2, "a"), op(100.9, "a", "failed"), op(101.5, "b"), op(102.1, "a", kind="read"), op(99.0, "a"),
           op(104.0, "b")]
    assert buckets(ops, 100.0, 3) == {"a": [(1, 1), (0, 0), (0, 0)], "b": [(0, 0), (1, 0), (0, 0)]}


def test_an_hours_drill_of_a_million_writes_is_counted_in_one_pass():
    # A 60-minute chaos drill lost its report here: each write built a fresh hour of empty
    # seconds (a setdefault's default), about 3.6 billion lists before the chart was drawn.
    ops = [op(1000.0 + (i % 3600) + 0.5, ("a", "b", "c")[i % 3]) for i in range(1_000_000)]
    out = buckets(ops, 1000.0, 3600)
    assert sum(ok for s in out.values() for ok, _ in s) == 1_000_000
