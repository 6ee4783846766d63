"""Real drills on the real lab, through the CLI: a power cut and an isolation of the primary's
site, each judged from its recorded history."""

import json
import os

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.lab


def drill(*args, report):
    r = run_cli("drill", *args, "--report", str(report), "--clients", "6", timeout=300)
    doc = json.loads((report / "report.json").read_text()) if (report / "report.json").exists() else None
    return r, doc


def test_power_cut_drill_passes_with_fast_failover(running_lab, tmp_path):
    r, doc = drill("power-cut", "--site", "primary", report=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert doc["verdict"] == "pass" and doc["failures"] == []
    assert doc["acked_writes"] > 100 and doc["acked_lost"] == 0 and doc["duplicates"] == 0
    assert doc["split_brain"] is False
    assert 0 < doc["write_rto_s"] < 10
    assert all(n == 0 for n in doc["read_failures"].values())
    assert doc["ops_actions"] and all(d["ok"] == d["tried"] > 0 for d in doc["ops_actions"].values())
    assert doc["power_cut_mode"]  # says whether the dead site was silent or refused connections
    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html and "PASS" in html and "<script src" not in html


@pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs network namespaces (root)")
def test_isolation_drill_never_has_two_acknowledging_primaries(running_lab, tmp_path):
    r, doc = drill("isolate", "--site", "primary", "--duration", "8", report=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert doc["verdict"] == "pass"
    assert doc["split_brain"] is False and doc["acked_lost"] == 0
    assert len(doc["primaries"]) >= 2  # the old primary stopped, a new one took over


@pytest.mark.skipif(os.geteuid() != 0, reason="a degraded link needs nftables (root)")
def test_a_scenario_file_runs_every_step(running_lab, tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: ops tools lost, then a degraded link\nclients: 4\nsteps:\n"
                        "  - {fault: ops-tools, site: ansan, duration: 3}\n  - {heal: ansan}\n"
                        "  - {fault: degrade, site: siheung, loss: 3, duration: 3}\n  - {heal: all}\n")
    r = run_cli("drill", "run", str(scenario), "--report", str(tmp_path / "r"), timeout=300)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert r.returncode == 0, r.stdout + r.stderr
    assert [f["fault"] for f in doc["faults"]] == ["ops-tools", "degrade"]
    assert doc["verdict"] == "pass" and doc["acked_lost"] == 0
