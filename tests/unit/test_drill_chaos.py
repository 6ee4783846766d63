"""`firebreak drill chaos`: the pure planner (same seed, same plan; fits its minutes; every kind
drawn; nothing the lab cannot produce; every fault healed; a valid scenario), its summary, and
the harness's bad-value fault and checks after a heal, with a fake lab and a fake clock."""

import pytest

from firebreak.drill import chaos, harness
from firebreak.drill.objectives import Objectives
from firebreak.drill.scenario import FaultStep, HealStep, Scenario, WaitStep, check_sites, check_steps
from firebreak.errors import InputError
from firebreak.lab.faults import bad_view

SITES = ["pangyo", "ansan", "siheung"]


def faults(sc):
    return [s for s in sc.steps if isinstance(s, FaultStep)]


@pytest.mark.parametrize("seed", [0, 1, 7, 2026])
def test_the_same_seed_draws_the_same_plan(seed):
    assert chaos.plan(seed, 15, SITES) == chaos.plan(seed, 15, SITES)


def test_another_seed_draws_another_plan():
    assert chaos.plan(1, 15, SITES).steps != chaos.plan(2, 15, SITES).steps


@pytest.mark.parametrize("minutes", [1, 2, 5, 10, 30, 120])
@pytest.mark.parametrize("seed", range(20))
def test_the_plan_fits_its_minutes_and_stops_only_when_the_next_fault_would_not(seed, minutes):
    try:
        sc = chaos.plan(seed, minutes, SITES)
    except InputError as e:  # one minute may fit not even the first fault drawn
        assert minutes == 1 and str(e).startswith("--minutes: 1 min fit no fault")
        return
    assert chaos.planned_seconds(sc) <= minutes * 60
    # The longest fault there is, with its heal and quiet wait, would not have fitted in what is left.
    longest = chaos.FLAP_HOLD_S[1] + chaos.ALLOWANCE_S[True] + chaos.QUIET_S[True][1]
    assert chaos.planned_seconds(sc) > minutes * 60 - longest


def test_given_enough_minutes_every_kind_is_drawn():
    for seed in range(5):
        drawn = {chaos.kind_of(s) for s in faults(chaos.plan(seed, 30, SITES))}
        assert drawn == set(chaos.KINDS), seed


@pytest.mark.parametrize("seed", range(20))
def test_without_nftables_no_network_fault_is_drawn(seed):
    sc = chaos.plan(seed, 60, SITES, can_filter=False)
    drawn = {chaos.kind_of(s) for s in faults(sc)}
    assert not drawn & {"isolate", "partition", "flap", "degrade"}
    assert drawn == set(chaos.KINDS) - chaos.NETWORK
    check_sites(sc, SITES, "chaos", net="loopback", can_filter=False)  # what the runner will check


@pytest.mark.parametrize("seed", range(20))
def test_every_fault_is_healed_the_lab_settles_and_a_quiet_wait_follows(seed):
    steps = chaos.plan(seed, 20, SITES).steps
    assert len(steps) % 3 == 0
    for fault, heal, wait in zip(steps[::3], steps[1::3], steps[2::3]):
        assert isinstance(fault, FaultStep)
        assert heal == HealStep(heal="all", settle=chaos.SETTLE_S)
        assert isinstance(wait, WaitStep)
        low, high = chaos.QUIET_S[chaos.kind_of(fault) in chaos.FAILOVER]
        assert low <= wait.wait <= high
        if fault.fault == "flap":
            assert chaos.FLAP_HOLD_S[0] <= fault.duration <= chaos.FLAP_HOLD_S[1]
            assert chaos.FLAP_PERIOD_S[0] <= fault.period <= chaos.FLAP_PERIOD_S[1]
        else:
            assert chaos.HOLD_S[0] <= fault.duration <= chaos.HOLD_S[1]


@pytest.mark.parametrize("seed", range(30))
def test_a_plan_passes_the_scenario_checks_of_a_file(seed):
    sc = chaos.plan(seed, 30, SITES)
    check_steps(sc, "chaos")
    check_sites(sc, SITES, "chaos")
    # and survives a round trip through the scenario file's model
    assert Scenario.model_validate(sc.model_dump()) == sc


def test_partitions_cut_a_role_pair_or_two_sites_and_other_faults_aim_at_a_role_or_a_site():
    pairs, targets = set(), set()
    for seed in range(40):
        for s in faults(chaos.plan(seed, 30, SITES)):
            if s.fault == "partition":
                pairs.add((s.site, s.peer))
            else:
                targets.add(s.site)
    assert {("primary", "sync-standby"), ("primary", "etcd-leader")} <= pairs
    assert any(a in SITES and b in SITES for a, b in pairs)
    assert targets == {"primary", "sync-standby", *SITES}


def test_the_plan_carries_the_objectives_given():
    sc = chaos.plan(3, 10, SITES, objectives=Objectives(max_write_unavailability_s=5))
    assert sc.objectives.max_write_unavailability_s == 5 and sc.name == "chaos seed 3 10 min"


@pytest.mark.parametrize("minutes", [0, -3])
def test_no_minutes_is_refused_naming_the_flag(minutes):
    with pytest.raises(InputError, match="^--minutes: must be a whole number of minutes, 1 or more"):
        chaos.plan(1, minutes, SITES)


# --- the summary ---------------------------------------------------------------------------

def test_the_summary_counts_faults_by_kind_with_the_worst_unavailability_of_each():
    sc = Scenario(name="c", steps=[
        FaultStep(fault="pause", site="primary", duration=5), HealStep(heal="all"),
        FaultStep(fault="pause", site="ansan", component="postgres", duration=5), HealStep(heal="all"),
        FaultStep(fault="pause", site="primary", duration=5), HealStep(heal="all"),
        FaultStep(fault="power-cut", site="primary", duration=5), HealStep(heal="all")])
    report = {"faults": [{"write_rto_s": 1.2}, {"write_rto_s": 0.4}, {"write_rto_s": 2.5}, {"write_rto_s": None}],
              "acked_writes": 900, "acked_lost": 0, "split_brain": False,
              "events": [{"kind": "fault"}, {"kind": "check", "problems": []}, {"kind": "check", "problems": ["x"]}]}
    s = chaos.summary(sc, report, seed=4, minutes=10)
    assert s["by_kind"] == {"pause": {"injected": 2, "worst_write_unavailability_s": 2.5},
                            "pause-postgres": {"injected": 1, "worst_write_unavailability_s": 0.4},
                            "power-cut": {"injected": 1, "worst_write_unavailability_s": None}}
    assert (s["faults"], s["acked_writes"], s["acked_lost"], s["split_brain"]) == (4, 900, 0, False)
    assert (s["checks"], s["checks_failed"], s["seed"], s["minutes"]) == (2, 1, 4, 10)


def test_the_summary_prints_a_line_per_kind():
    from firebreak.cli.drill import chaos_lines

    lines = chaos_lines({"seed": 4, "minutes": 10, "faults": 2, "acked_writes": 900, "acked_lost": 0,
                         "split_brain": False, "checks": 2, "checks_failed": 0,
                         "by_kind": {"pause": {"injected": 1, "worst_write_unavailability_s": 2.5},
                                     "power-cut": {"injected": 1, "worst_write_unavailability_s": None}}})
    assert lines == ["chaos seed 4, 10 min: 2 faults; acknowledged writes 900, lost 0, split brain no; checks after "
                     "the heals 2/2 passed",
                     "  pause: 1 injected, worst write unavailability 2.50 s",
                     "  power-cut: 1 injected, worst write unavailability never resumed"]


# --- bad values and checks after a heal, with a fake lab and a fake clock --------------------

def test_bad_views_are_malformed_in_turn_and_always_under_the_sites_own_observer():
    import json

    values = [bad_view("ansan", ["pangyo", "siheung"], n, 5.0) for n in range(6)]
    assert json.loads(values[0])["unreachable_for"] == "3.0"
    assert json.loads(values[1])["unreachable_for"] == {"siheung": "3.0"}
    with pytest.raises(ValueError):
        json.loads(values[2])


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def sleep(self, s):
        self.now += max(0.0, s)


class FakeWriter:
    key, every, role = "/firebreak/views/ansan", 0.3, "agent-ansan"

    def __init__(self):
        self.stopped = False

    def stop(self):
        self.stopped = True
        return {"written": 30, "failed": 0}


class FakeLab:
    def __init__(self, clock, agent_alive=True):
        self.clock, self.calls, self.agent_alive, self.writers = clock, [], agent_alive, []

    def bad_values(self, site):
        self.calls.append((round(self.clock.now - 1000.0, 3), "bad_values", site))
        self.writers.append(FakeWriter())
        return self.writers[-1]

    def settled(self, timeout=0):
        return True

    def status(self):
        return {"healthy": True, "sites": {s: {"console": "http://c", "processes": {
            "agent": {"pid": 1, "alive": self.agent_alive or s != "ansan"}}} for s in ("pangyo", "ansan", "siheung")}}


@pytest.fixture
def fake(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(harness, "time", clock)
    monkeypatch.setattr(harness, "wait_healthy", lambda timeout=0: harness.lab.status())
    monkeypatch.setattr(harness, "check_consistency", lambda st: [])

    def use(lab):
        monkeypatch.setattr(harness, "lab", lab)
        return lab
    return clock, use


def steps_of(*steps):
    faults_, events = [], []
    harness.run_steps(Scenario(name="s", steps=list(steps)), lambda at: 0.1, faults_, events, lambda m: None,
                      lambda role: {"primary": "pangyo", "sync-standby": "ansan"}[role])
    return faults_, events


def test_bad_values_are_written_for_their_duration_then_stopped_and_every_agent_checked(fake):
    clock, use = fake
    lab = use(FakeLab(clock))
    faults_, events = steps_of(FaultStep(fault="bad-value", site="sync-standby", duration=6),
                               HealStep(heal="all", settle=60))
    assert lab.calls == [(0.0, "bad_values", "ansan")]
    assert lab.writers[0].stopped and faults_[0].healed == 1006.0
    checks = [e for e in events if e.kind == "check"]
    assert [(c.detail, c.problems) for c in checks][0] == ("every agent alive after bad values", [])
    assert checks[1].detail.startswith("replicas agree after the heal") and checks[1].problems == []
    assert harness.findings(events, 1000.0) == []


def test_an_agent_that_died_of_bad_values_fails_the_drill(fake):
    clock, use = fake
    use(FakeLab(clock, agent_alive=False))
    _, events = steps_of(FaultStep(fault="bad-value", site="ansan", duration=3), HealStep(heal="ansan"))
    found = harness.findings(events, 1000.0)
    assert len(found) == 1 and found[0].startswith("every agent alive after bad values (") \
        and found[0].endswith("ansan's agent exited")


def test_replicas_that_disagree_after_a_heal_and_a_lab_that_never_heals_fail_the_drill(fake, monkeypatch):
    from firebreak.errors import LabError

    clock, use = fake
    use(FakeLab(clock))
    monkeypatch.setattr(harness, "check_consistency", lambda st: ["etcd members disagree at revision 9"])
    _, events = steps_of(FaultStep(fault="bad-value", site="ansan", duration=3), HealStep(heal="all", settle=30))
    assert any("replicas agree after the heal" in f and f.endswith("etcd members disagree at revision 9")
               for f in harness.findings(events, 1000.0))

    def never(timeout=0):
        raise LabError("the lab is not healthy")
    monkeypatch.setattr(harness, "wait_healthy", never)
    _, events = steps_of(FaultStep(fault="bad-value", site="ansan", duration=3), HealStep(heal="all", settle=30))
    assert any(f.startswith("lab healthy within 30 s of the heal") for f in harness.findings(events, 1000.0))


def test_findings_fail_the_verdict():
    from firebreak.drill.verdict import judge
    from firebreak.drill.workload import Op

    ops = [Op(kind="write", site="pangyo", key=f"k{i}", invoke=1000.0 + i * 0.1, complete=1000.05 + i * 0.1,
              outcome="ok", primary="pangyo", timeline=1) for i in range(20)]
    r = judge(scenario=Scenario(name="s", steps=[WaitStep(wait=1)]), ops=ops, stored={o.key: 1 for o in ops},
              sites=SITES, start=1000.0, end=1002.0, faults=[], silenced={}, findings=["pangyo's agent exited"])
    assert r["verdict"] == "fail" and "pangyo's agent exited" in r["failures"]
