"""The detector benchmark's bookkeeping: a verdict shown by three consoles is one, a stress run
stopped half-way says so, and runs made apart are one table."""

import json

from bench.detector import distinct_episodes, merged, render

SLOW = {"probe_interval": 0.2, "probe_timeout": 0.2, "window": 1.0, "fresh": 1.5}
FAST = {"probe_interval": 0.1, "probe_timeout": 0.1, "window": 0.5, "fresh": 0.75}


def test_one_verdict_seen_by_every_console_counts_once_and_a_later_one_again():
    seen = [{"observer": o, "site": "ansan", "at": 100.0 + i * 0.3} for i, o in enumerate(("pangyo", "siheung"))]
    seen += [{"observer": "pangyo", "site": "siheung", "at": 100.2}, {"observer": "pangyo", "site": "ansan", "at": 103.0}]
    assert [(e["site"], e["at"]) for e in distinct_episodes(seen)] == [("ansan", 100.0), ("siheung", 100.2),
                                                                        ("ansan", 103.0)]


def stress(minutes, verdicts, **extra):
    return {"minutes": minutes, "agent_pauses": int(minutes * 12), "false_dead_verdicts": verdicts, "failovers": 0,
            "etcd_leader_moves": 0, "standbys_dropped": 0, "doors_refusing_writes": 0, **extra}


def test_two_runs_are_one_table_each_row_naming_its_run(tmp_path):
    a, b = tmp_path / "slow.json", tmp_path / "fast.json"
    for path, setting, started, verdicts in ((a, SLOW, "2026-12-05T13:00:00", 0), (b, FAST, "2026-12-06T09:00:00", 2)):
        path.write_text(json.dumps({"command": "bench/detector.py --minutes 120", "started": started, "machine": "vm",
                                    "rows": [{"setting": setting, "idle": None, "stress": stress(120, verdicts),
                                              "cuts": {"rto_s": [0.8, 0.9], "summary": {"lost": 0}}}]}))
    doc = merged([a, b])
    assert [r["run"]["started"] for r in doc["rows"]] == ["2026-12-05T13:00:00", "2026-12-06T09:00:00"]
    table = render(doc, tmp_path / "plot.svg").splitlines()
    assert table[2].startswith("| 0.2/0.2/1/1.5 (run of 2026-12-05T13:00) |") and "| 120 min, 1440 pauses | 0 |" in table[2]
    assert table[3].startswith("| 0.1/0.1/0.5/0.75 (run of 2026-12-06T09:00) |") and "| 2 |" in table[3]
    assert "0.1/0.1/0.5/0.75 (run of 2026-12-06T09:00)" in (tmp_path / "plot.svg").read_text()
    # One run alone is rendered as it was saved.
    assert merged([a])["rows"][0].get("run") is None


def test_a_stress_run_that_stopped_says_so_in_the_table(tmp_path):
    doc = {"rows": [{"setting": FAST, "idle": None, "stress": stress(35.2, 0, stopped_early=True), "cuts": None}]}
    row = render(doc, tmp_path / "plot.svg").splitlines()[2]
    assert "| 35.2 min (stopped early), 422 pauses | 0 |" in row and row.endswith("| – | 0 | – | – | – | – | – |")


def test_a_row_measured_without_stress_says_so_rather_than_zero_minutes(tmp_path):
    doc = {"rows": [{"setting": SLOW, "idle": None, "stress": None, "cuts": {"rto_s": [1.4], "summary": {"lost": 0}}}]}
    assert "| 0.2/0.2/1/1.5 | –, – | – | – |" in render(doc, tmp_path / "plot.svg").splitlines()[2]
