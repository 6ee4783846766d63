"""The drill harness's shared report block, and the one place that picks a lab's runner."""

from pathlib import Path

import pytest

from firebreak.drill import cluster_run, estate_run, harness, runner
from firebreak.drill.harness import Active, Event
from firebreak.drill.scenario import Scenario, WaitStep
from firebreak.errors import InputError


def test_finish_report_stamps_every_fault_with_wall_times_and_lists_events():
    events = [Event(1003.0, 1.7e9 + 3, "fault", "pangyo", "power cut"),
              Event(1009.0, 1.7e9 + 9, "check", "", "replicas agree after the heal", ["etcd disagrees"])]
    faults = [Active("power-cut", "pangyo", 1003.0, healed=1008.0, silenced="link-down")]
    assert harness.fault_rows(faults, events, 1020.0) == [("power-cut", "pangyo", 1003.0, 1008.0)]
    assert harness.silenced(faults) == {"pangyo": "link-down"}
    report = {"faults": [{"at_s": 3.0, "healed_at_s": 8.0}]}
    harness.finish_report(report, start=1000.0, start_wall=1.7e9, final={"net": "netns"}, agents=True,
                          events=events, primaries_before={"db": "pangyo"})
    assert list(report)[:5] == ["faults", "started", "net", "agents", "primaries_before"]
    assert report["faults"][0]["start_wall"] == 1.7e9 + 3 and report["faults"][0]["end_wall"] == 1.7e9 + 8
    assert report["events"][0] == {"t": 3.0, "wall": 1.7e9 + 3, "kind": "fault", "site": "pangyo",
                                   "detail": "power cut"}
    assert report["events"][1]["problems"] == ["etcd disagrees"]
    assert set(report["versions"]) == {"firebreak", "python"} and "cpus" in report["machine"]


def test_an_unhealed_fault_ends_at_its_sites_heal_event_or_the_drills_end():
    f = Active("isolate", "ansan", 1002.0)
    assert harness.healed_at(f, [Event(1007.0, 0.0, "heal", "ansan", "healed")], 1020.0) == 1007.0
    assert harness.healed_at(f, [], 1020.0) == 1020.0


class FakeLab:
    def __init__(self, estate):
        self.estate = estate

    def status(self):
        return {"estate": self.estate, "sites": {}}


@pytest.mark.parametrize("estate,chosen", [(False, "cluster"), (True, "estate")])
def test_runner_run_gives_an_estate_lab_the_estate_runner_and_any_other_the_cluster_runner(monkeypatch, estate,
                                                                                          chosen):
    monkeypatch.setattr(runner, "lab", FakeLab(estate))
    monkeypatch.setattr(cluster_run, "run", lambda *a, **k: {"runner": "cluster"})
    monkeypatch.setattr(estate_run, "run", lambda *a, **k: {"runner": "estate"})
    sc = Scenario(name="s", steps=[WaitStep(wait=1)])
    assert runner.run(sc, Path("r"))["runner"] == chosen
    if estate:
        with pytest.raises(InputError, match="chaos drill runs on the default three-site lab"):
            runner.run(sc, Path("r"), chaos=(1, 5))
