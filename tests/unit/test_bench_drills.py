"""The gray-failure benchmark's summary: measured percentiles, and a drill whose writes never
resumed counted as such, never averaged away."""

from bench.drills import GRAY, by_fault, by_fault_table, nearest_rank


def row(fault, mode, rto, gap=None, failovers=0):
    return {"fault": fault, "mode": mode, "rto_s": rto, "max_gap_s": gap if gap is not None else (rto or 30.0),
            "acked": 100, "lost": 0, "failovers": failovers, "split_brain": False}


def test_nearest_rank_returns_a_measured_value():
    assert nearest_rank([1.0, 2.0, 3.0], 50) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0], 95) == 3.0
    assert nearest_rank([1.0, float("inf")], 50) == 1.0


def test_by_fault_per_mode_with_a_drill_that_never_resumed():
    rows = [row("pause", "firebreak", 1.5, failovers=1), row("pause", "firebreak", 1.7, failovers=1),
            row("pause", "firebreak", 1.6, failovers=1), row("pause", "patroni", None)]
    s = by_fault(rows)
    assert s["pause firebreak"]["rto_p50_s"] == 1.6 and s["pause firebreak"]["rto_max_s"] == 1.7
    assert s["pause firebreak"]["failovers"] == 3 and s["pause firebreak"]["acked"] == 300
    assert s["pause patroni"]["rto_max_s"] == float("inf")
    table = by_fault_table(s)
    assert "| pause | Firebreak | 3 | 1.60 s / 1.70 s / 1.70 s |" in table
    assert "| pause | Patroni alone | 1 | never / never / never |" in table


def test_every_gray_fault_aims_at_the_primarys_site():
    assert set(GRAY) == {"partition-sync", "partition-etcd", "pause", "pause-postgres", "flap", "flap-fast", "bad-value"}
    assert all(step.site == "primary" for step in GRAY.values())
    assert GRAY["partition-etcd"].peer == "etcd-leader" and GRAY["pause-postgres"].component == "postgres"
    assert GRAY["bad-value"].fault == "bad-value" and GRAY["bad-value"].duration == 10
    # Halves shorter than the default detector's window (0.5 s) and past half of it: lapses, no verdict.
    assert 0.25 < GRAY["flap-fast"].period / 2 < 0.5
