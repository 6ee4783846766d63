"""The replication benchmark's runs per mode, and its summary of a mode whose writes never resumed."""

import pytest

from bench.replication import etcd_table, patroni_roles, repeats, summary, table


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
    assert "| 20 | 0.10 s / 0.19 s / 0.20 s / 0.20 s | 0.10 s | 0 / 0 ms | – / – | 2,000 | 0 |" in quorum
    assert "| never / never / never / never | 12.00 s | – / – ms |" in patroni


def test_the_reference_service_beside_the_ordinary_client_has_its_own_unavailability_and_lost_writes():
    base = {"mode": "sync", "fault": "isolate primary", "rto_s": 0.8, "max_gap_s": 0.8, "p99_added_ms": 1.0,
            "acked": 100, "lost": 0, "web_max_gap_s": 0.9, "web_acked": 50, "web_lost": 0}
    rows = [{**base, "web_rto_s": 0.9}, {**base, "web_rto_s": 1.1, "web_lost": 1},
            {**base, "web_rto_s": 0.01, "web_max_gap_s": 11.99}]   # one write as the fault landed, then none
    s = summary(rows)["sync isolate primary"]
    assert s["web_rto_p50_s"] == 1.1 and s["web_rto_max_s"] == float("inf") and s["web_lost"] == 1
    (line,) = table({"sync isolate primary": s}).splitlines()[2:]
    assert line.endswith("| 1.10 s / never | 300 + 150 | 1 |")


def test_a_write_that_slipped_in_as_the_fault_landed_does_not_hide_a_stall_to_the_end_of_the_hold():
    """Rows saved before write_rto took the hold's end: Patroni alone's 0.004 s, then 12 s of nothing."""
    rows = [{"mode": "patroni", "fault": "isolate primary", "rto_s": 0.004, "max_gap_s": 11.996,
             "p99_added_ms": -2.0, "acked": 10, "lost": 0},
            {"mode": "patroni", "fault": "isolate primary", "rto_s": 0.8, "max_gap_s": 0.8,
             "p99_added_ms": -2.0, "acked": 10, "lost": 0}]
    s = summary(rows)["patroni isolate primary"]
    assert s["rto_max_s"] == float("inf") and s["rto_p50_s"] == 0.8


def test_patroni_s_own_reports_show_a_demotion_and_a_promotion_that_the_same_primary_after_hides():
    """failsafe_mode off: the primary demoted itself and took its key back later, on a new
    timeline; the writes alone read as the same primary before and after."""
    seen = [(t * 0.5, "pangyo", "primary", 5) for t in range(0, 4)]          # before the fault at 2.0
    seen += [(2.0 + t * 0.5, "pangyo", "replica", 5) for t in range(0, 5)]   # read demoted from 2.0 ...
    seen += [(4.5, "pangyo", None, None), (5.0, "pangyo", None, None)]       # unanswered: no evidence
    seen += [(5.5, "pangyo", "primary", 6), (5.5, "ansan", "replica", 6)]    # ... to its next reading, 5.5
    r = patroni_roles(seen, "pangyo", since=2.0)
    assert r == {"demoted_s": 3.5, "promoted": [], "timelines": [6]}
    promoted = patroni_roles(seen + [(3.0, "ansan", "primary", 6)], "pangyo", since=2.0)
    assert promoted["promoted"] == ["ansan"] and promoted["timelines"] == [6]
    # before the fault does not count
    assert patroni_roles(seen[:4], "pangyo", since=2.0) == {"demoted_s": 0.0, "promoted": [], "timelines": []}


def test_the_etcd_table_says_what_patroni_did_and_when_the_agents_agreed_again():
    rows = [{"mode": "quorum", "fault": "etcd-cut", "acked_during": 14466, "max_gap_s": 0.27, "demoted_s": 0.0,
             "promoted": [], "timelines": [3], "agents_back_s": 2.4, "lost": 0, "web_acked_during": 3000,
             "web_max_gap_s": 0.31, "web_lost": 1},
            {"mode": "patroni", "fault": "etcd-stop", "acked_during": 100, "max_gap_s": 56.4, "demoted_s": 41.5,
             "promoted": [], "timelines": [3, 4], "agents_back_s": None, "lost": 0},
            {"mode": "quorum", "fault": "power-cut primary", "rto_s": 0.8}]
    rows.append({**rows[0], "mode": "sync", "agents_back_s": None})
    quorum, patroni, stuck = etcd_table(rows).splitlines()[2:]
    assert quorum == "| quorum | etcd-cut | 14,466 / 0.27 s | 3,000 / 0.31 s | 0.0 | none | 3 | 2.4 s | 1 |"
    assert patroni == "| patroni | etcd-stop | 100 / 56.40 s | – | 41.5 | none | 3, 4 | – | 0 |"
    assert "| never |" in stuck   # agents that never agreed again are not a number
