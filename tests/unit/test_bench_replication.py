"""The replication benchmark's runs per mode, and its summary of a mode whose writes never resumed."""

import pytest

from bench.replication import repeats, summary, table


def test_one_number_of_runs_for_every_mode_or_each_its_own():
    assert repeats("20", ["quorum", "sync", "patroni"]) == {"quorum": 20, "sync": 20, "patroni": 20}
    assert repeats("quorum=20,sync=20,patroni=5", ["quorum", "sync", "patroni"]) == \
        {"quorum": 20, "sync": 20, "patroni": 5}
    assert repeats("quorum=3", ["quorum", "sync"]) == {"quorum": 3, "sync": 1}


def test_a_mode_not_run_is_refused():
    with pytest.raises(SystemExit, match="patroni"):
        repeats("patroni=5", ["quorum", "sync"])


def test_a_drill_whose_writes_never_resumed_is_the_worst_not_averaged_away():
    rows = [{"mode": "patroni", "fault": "power-cut primary", "rto_s": rto, "max_gap_s": 12.0,
             "p99_added_ms": 0.0, "acked": 10, "lost": 0} for rto in (None, None, 0.9)]
    s = summary(rows)["patroni power-cut primary"]
    assert s["runs"] == 3 and s["rto_max_s"] == float("inf") and s["rto_p50_s"] == float("inf")


def test_the_table_gives_p99_and_says_so_when_no_write_came_to_compare():
    rows = [{"mode": "quorum", "fault": "power-cut standby", "rto_s": 0.01 * i, "max_gap_s": 0.1,
             "p99_added_ms": -0.4, "acked": 100, "lost": 0} for i in range(1, 21)]
    rows += [{"mode": "patroni", "fault": "power-cut primary", "rto_s": None, "max_gap_s": 12.0,
              "p99_added_ms": float("nan"), "acked": 10, "lost": 0}] * 2
    quorum, patroni = table(summary(rows)).splitlines()[2:]
    assert "| 20 | 0.10 s / 0.19 s / 0.20 s / 0.20 s | 0.10 s | 0 / 0 ms | 2,000 | 0 |" in quorum
    assert "| never / never / never / never | 12.00 s | – / – ms |" in patroni


def test_a_write_that_slipped_in_as_the_fault_landed_does_not_hide_a_stall_to_the_end_of_the_hold():
    """Rows saved before write_rto took the hold's end: Patroni alone's 0.004 s, then 12 s of nothing."""
    rows = [{"mode": "patroni", "fault": "isolate primary", "rto_s": 0.004, "max_gap_s": 11.996,
             "p99_added_ms": -2.0, "acked": 10, "lost": 0},
            {"mode": "patroni", "fault": "isolate primary", "rto_s": 0.8, "max_gap_s": 0.8,
             "p99_added_ms": -2.0, "acked": 10, "lost": 0}]
    s = summary(rows)["patroni isolate primary"]
    assert s["rto_max_s"] == float("inf") and s["rto_p50_s"] == 0.8
