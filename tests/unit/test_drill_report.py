"""Drill report files: JUnit for CI systems, and report directories that never overwrite."""

import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timezone

from firebreak.drill.report import junit_xml, new_report_dir
from tests.unit.test_drill_verdict import SCEN, SITES, FAULT, healthy_history, w
from firebreak.drill.verdict import judge


def test_junit_has_one_case_per_objective_and_fails_the_missed_one():
    ops = [w(f"a{i}", i * 0.5, i * 0.5 + 0.05, primary="p1", tl=1) for i in range(20)]
    ops += [w(f"b{i}", 32.0 + i * 0.5, 32.05 + i * 0.5) for i in range(20)]  # Patroni alone: 22 s
    r = judge(scenario=SCEN, ops=ops, stored=Counter(o.key for o in ops), sites=SITES, start=0.0, end=42.0,
              faults=FAULT, silenced={})
    suite = ET.fromstring(junit_xml(r))
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"write_unavailability_s", "write_gap_s", "acked_lost", "read_failures", "failed_ops",
                          "correctness"}
    assert suite.get("failures") == "2"
    failure = cases["write_unavailability_s"].find("failure")
    assert failure is not None and "over the objective of 3 s by 19.05 s" in failure.get("message")
    assert cases["acked_lost"].find("failure") is None


def test_junit_reports_a_split_brain_as_a_correctness_failure():
    ops, stored = healthy_history()
    ops.append(w("late", 12.0, 12.2, primary="p1", tl=1))
    stored["late"] = 1
    r = judge(scenario=SCEN, ops=ops, stored=stored, sites=SITES, start=0.0, end=32.0, faults=FAULT, silenced={})
    suite = ET.fromstring(junit_xml(r))
    correctness = next(c for c in suite.iter("testcase") if c.get("name") == "correctness")
    assert "two primaries" in correctness.find("failure").get("message")


def test_report_directories_are_new_each_time_and_latest_follows(tmp_path):
    t = datetime(2026, 12, 1, 6, 0, 0, tzinfo=timezone.utc)
    a = new_report_dir(tmp_path, "power-cut primary", now=t)
    (a / "report.json").write_text("{}")
    b = new_report_dir(tmp_path, "power-cut primary", now=t)  # same second: a suffix, not an overwrite
    assert a.name == "20261201-060000-power-cut-primary" and b.name == a.name + "-2"
    assert (a / "report.json").read_text() == "{}"
    assert (tmp_path / "latest").resolve() == b.resolve()
    c = new_report_dir(tmp_path, "isolate ansan")
    assert (tmp_path / "latest").resolve() == c.resolve() and len(list(tmp_path.iterdir())) == 4
