"""Drills of gray failures (partition, pause, flap): scenario validation, the flap's schedule,
and the drill's stepping and healing, with a fake lab and a fake clock."""

import threading

import pytest

from firebreak.drill import harness
from firebreak.drill.scenario import FaultStep, HealStep, Scenario, WaitStep, check_sites, check_steps, parse_link
from firebreak.errors import InputError

SITES = ["pangyo", "ansan", "siheung"]


# --- a flap's schedule -----------------------------------------------------------------------

@pytest.mark.parametrize("period,hold,expected", [
    (4, 10, [2, 4, 6, 8]),          # down at 0, up 2, down 4, up 6, down 8; healed at 10
    (4, 8, [2, 4, 6]),              # the toggle at the very end is the heal
    (2, 2, [1]),
    (10, 10, [5]),
])
def test_a_flap_toggles_every_half_period_before_its_end(period, hold, expected):
    assert harness.flap_toggles(100.0, period, hold) == [100.0 + t for t in expected]


# --- scenarios -------------------------------------------------------------------------------

def scenario(*steps):
    return Scenario(name="s", steps=list(steps))


def problems(sc, **kw):
    with pytest.raises(InputError) as e:
        check_sites(sc, SITES, "s.yaml", **kw)
    return [str(p) for p in e.value.problems]


GOOD = [
    FaultStep(fault="partition", site="pangyo", peer="ansan"),
    FaultStep(fault="partition", site="primary", peer="sync-standby", duration=20),
    FaultStep(fault="pause", site="primary"),
    FaultStep(fault="pause", site="ansan", component="postgres", duration=3),
    FaultStep(fault="flap", site="siheung", period=4),
    FaultStep(fault="flap", site="siheung", period=4, duration=4),
]


@pytest.mark.parametrize("step", GOOD, ids=lambda s: f"{s.fault}-{s.site}")
def test_good_gray_steps_pass(step):
    check_sites(scenario(step), SITES, "s.yaml")


def test_pause_and_flap_last_their_own_default_when_no_duration_is_given():
    assert FaultStep(fault="pause", site="a").hold == 8
    assert FaultStep(fault="flap", site="a", period=2).hold == 60
    assert FaultStep(fault="pause", site="a", duration=3).hold == 3
    assert FaultStep(fault="isolate", site="a").hold == 0  # until writes resume, as before


BAD = [
    (FaultStep(fault="partition", site="pangyo"), "s.yaml: steps[0].peer: a partition cuts one link"),
    (FaultStep(fault="partition", site="pangyo", peer="pangyo"),
     "s.yaml: steps[0].peer: a link joins two different sites; site and peer are both 'pangyo'"),
    (FaultStep(fault="partition", site="primary", peer="primary"), "s.yaml: steps[0].peer: a link joins two"),
    (FaultStep(fault="partition", site="pangyo", peer="ansn"),
     "s.yaml: steps[0].peer: unknown site 'ansn' (did you mean 'ansan'?)"),
    (FaultStep(fault="isolate", site="pangyo", peer="ansan"), "s.yaml: steps[0].peer: applies only to fault: partition"),
    (FaultStep(fault="pause", site="ansan", component="patroni"), "s.yaml: steps[0].component: unknown component 'patroni'"),
    (FaultStep(fault="power-cut", site="ansan", component="postgres"),
     "s.yaml: steps[0].component: applies only to fault: pause"),
    (FaultStep(fault="pause", site="ansan", duration=0), "s.yaml: steps[0].duration: a pause always lasts its duration"),
    (FaultStep(fault="flap", site="ansan"), "s.yaml: steps[0].period: a flap needs its period"),
    (FaultStep(fault="flap", site="ansan", period=0.5), "s.yaml: steps[0].period: must be at least 0.8 s"),
    (FaultStep(fault="flap", site="ansan", period=30, duration=10),
     "s.yaml: steps[0].period: a flap of period 30 s needs a duration of at least that, got 10 s"),
    (FaultStep(fault="flap", site="ansan", period=4, duration=0), "s.yaml: steps[0].duration: a flap always lasts"),
    (FaultStep(fault="degrade", site="ansan", loss=5, period=4), "s.yaml: steps[0].period: applies only to fault: flap"),
]


@pytest.mark.parametrize("step,expected", BAD, ids=[b[1].split(": ", 2)[1] + " " + b[0].fault for b in BAD])
def test_bad_gray_steps_are_refused_naming_step_and_field(step, expected):
    found = problems(scenario(step))
    assert any(p.startswith(expected) for p in found), found


def test_a_scenario_is_checked_whole_and_its_site_free_rules_need_no_lab():
    sc = scenario(WaitStep(wait=1), FaultStep(fault="partition", site="pangyo"),
                  FaultStep(fault="flap", site="ansan", component="postgres", period=2))
    with pytest.raises(InputError) as e:
        check_steps(sc, "s.yaml")
    paths = [p.path for p in e.value.problems]
    assert paths == ["steps[1].peer", "steps[2].component"]


@pytest.mark.parametrize("fault", ["partition", "flap"])
def test_cutting_links_on_loopback_needs_nftables(fault):
    step = FaultStep(fault=fault, site="pangyo", **({"peer": "ansan"} if fault == "partition" else {"period": 2}))
    found = problems(scenario(step), net="loopback", can_filter=False)
    assert any(p.startswith("s.yaml: steps[0].fault: " + fault + " needs root") for p in found), found
    check_sites(scenario(step), SITES, "s.yaml", net="loopback", can_filter=True)


def test_a_pause_needs_no_nftables():
    check_sites(scenario(FaultStep(fault="pause", site="pangyo")), SITES, "s.yaml", net="loopback", can_filter=False)


@pytest.mark.parametrize("value,expected", [("pangyo,ansan", ("pangyo", "ansan")),
                                            (" primary , sync-standby ", ("primary", "sync-standby"))])
def test_a_link_is_two_sites_and_a_comma(value, expected):
    assert parse_link(value) == expected


@pytest.mark.parametrize("value", ["pangyo", "pangyo,", "a,b,c", "ansan,ansan", ""])
def test_a_link_that_is_not_two_sites_is_refused(value):
    with pytest.raises(InputError, match="^--sites: "):
        parse_link(value)


def test_scenarios_written_before_gray_faults_still_load(tmp_path):
    from firebreak.drill.scenario import load_scenario
    f = tmp_path / "old.yaml"
    f.write_text("name: old\nsteps:\n  - fault: power-cut\n    site: primary\n  - wait: 5\n  - heal: all\n"
                 "  - fault: isolate\n    site: ansan\n    duration: 10\n  - fault: degrade\n    site: pangyo\n"
                 "    loss: 5\n  - fault: ops-tools\n    site: siheung\n")
    sc = load_scenario(f, SITES)
    assert [getattr(s, "fault", None) for s in sc.steps] == ["power-cut", None, None, "isolate", "degrade", "ops-tools"]


# --- the drill's stepping and healing, with a fake lab and a fake clock ----------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return self.now + 1.7e9

    def sleep(self, s):
        self.now += max(0.0, s)


class FakeLab:
    def __init__(self, clock):
        self.calls, self.clock = [], clock

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((round(self.clock.now - 1000.0, 3), name, *args))
            return {"cut": "netns-nftables", "isolated": "netns-nftables", "paused": 7, "component": "postgres",
                    "resumed": 7, "healthy": True, "sites": {}}
        return call

    def status(self):
        return {"healthy": True, "sites": {}}


@pytest.fixture
def fake(monkeypatch):
    clock = FakeClock()
    fake_lab = FakeLab(clock)
    monkeypatch.setattr(harness, "time", clock)
    monkeypatch.setattr(harness, "lab", fake_lab)
    monkeypatch.setattr(harness, "wait_healthy", lambda timeout=0: {})
    return clock, fake_lab


def steps_of(*steps):
    faults, events = [], []
    harness.run_steps(Scenario(name="s", steps=list(steps)), lambda at: 0.5, faults, events, lambda m: None,
                      lambda role: {"primary": "pangyo", "sync-standby": "ansan"}[role])
    return faults, events


def names(fake_lab):
    return [c[1:] for c in fake_lab.calls]


def test_a_partition_of_roles_cuts_the_link_between_their_sites_and_heal_of_either_end_restores_it(fake):
    _, fake_lab = fake
    faults, events = steps_of(FaultStep(fault="partition", site="primary", peer="sync-standby", duration=5),
                              HealStep(heal="ansan"))
    assert names(fake_lab) == [("cut", "pangyo", "ansan"), ("uncut", "pangyo", "ansan")]
    assert faults[0].site == "pangyo" and faults[0].peer == "ansan" and faults[0].healed is not None
    fault_event = next(e for e in events if e.kind == "fault")
    assert fault_event.site == "pangyo" and "pangyo-ansan" in fault_event.detail


def test_a_pause_is_continued_when_its_duration_is_up_even_though_writes_resumed_sooner(fake):
    _, fake_lab = fake
    faults, events = steps_of(FaultStep(fault="pause", site="primary", component="postgres", duration=8))
    assert [c[:3] for c in fake_lab.calls] == [(0.0, "pause", "pangyo"), (8.0, "resume", "pangyo")]
    assert faults[0].healed - faults[0].since == 8.0
    assert [e.kind for e in events] == ["fault", "heal"]


def test_a_flap_toggles_on_its_schedule_and_ends_healed(fake):
    _, fake_lab = fake
    faults, events = steps_of(FaultStep(fault="flap", site="siheung", period=4, duration=10))
    assert fake_lab.calls == [(0.0, "isolate", "siheung"), (2.0, "unisolate", "siheung"), (4.0, "isolate", "siheung"),
                              (6.0, "unisolate", "siheung"), (8.0, "isolate", "siheung"),
                              (10.0, "unisolate", "siheung")]
    assert [e.detail for e in events if e.kind == "flap"] == ["links up", "links down", "links up", "links down"]
    assert faults[0].healed == faults[0].since + 10


def test_healing_an_isolation_leaves_a_partition_of_the_same_site_for_its_own_heal(fake):
    _, fake_lab = fake
    faults, _ = steps_of(FaultStep(fault="partition", site="pangyo", peer="siheung", duration=1),
                         FaultStep(fault="isolate", site="ansan", duration=1), HealStep(heal="ansan"))
    assert names(fake_lab) == [("cut", "pangyo", "siheung"), ("isolate", "ansan"), ("unisolate", "ansan"),
                               ("uncut", "pangyo", "siheung")]  # the last: healed at the drill's end


def test_a_drill_interrupted_during_a_pause_continues_the_paused_processes(fake, monkeypatch):
    clock, fake_lab = fake

    def interrupted(_s):
        raise KeyboardInterrupt
    monkeypatch.setattr(clock, "sleep", interrupted)
    faults, events = [], []
    with pytest.raises(Exception, match="healed pangyo"):
        harness.drive(Scenario(name="s", steps=[FaultStep(fault="pause", site="pangyo")]), [],
                      threading.Event(), lambda at: None, lambda r: None, faults, events, lambda m: None)
    assert names(fake_lab) == [("pause", "pangyo", None), ("resume", "pangyo")]
