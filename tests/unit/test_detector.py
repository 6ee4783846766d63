"""Failure detection by agreement, as tables of views in and verdicts out (like raft's step tests)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firebreak.control.detector import FLAP_SPAN, DetectorConfig, View, majority, verdicts

SITES = ["pangyo", "ansan", "siheung"]
CFG = DetectorConfig(window=1.0, fresh=1.5)
NOW = 100.0


def view(observer, published=NOW, **down):
    return View(observer, published, {s: down.get(s, 0.0) for s in SITES if s != observer})


CASES = [
    # (name, views, expected dead sites)
    ("everyone sees everyone", [view("pangyo"), view("ansan"), view("siheung")], set()),
    ("both others see pangyo down for the window: dead",
     [view("ansan", pangyo=1.2), view("siheung", pangyo=1.1)], {"pangyo"}),
    ("one observer is not enough (a single agent's opinion)",
     [view("ansan", pangyo=5.0), view("siheung")], set()),
    ("one observer and no other view: not enough",
     [view("ansan", pangyo=5.0)], set()),
    ("down, but not yet for the whole window",
     [view("ansan", pangyo=0.5), view("siheung", pangyo=0.4)], set()),
    ("window reached by time passed since the view was published",
     [view("ansan", published=NOW - 0.3, pangyo=0.8), view("siheung", published=NOW - 0.3, pangyo=0.8)], {"pangyo"}),
    ("stale views do not vote",
     [view("ansan", published=NOW - 2.0, pangyo=5.0), view("siheung", published=NOW - 2.0, pangyo=5.0)], set()),
    ("the suspect's own view is never counted for itself",
     [view("pangyo", ansan=5.0, siheung=5.0), view("ansan", pangyo=5.0)], set()),
    ("an isolated agent that still publishes sees both others down: it alone cannot kill them",
     [view("pangyo", ansan=5.0, siheung=5.0), view("ansan"), view("siheung")], set()),
    ("isolated pangyo: the other two agree, pangyo's contrary view does not matter",
     [view("pangyo", ansan=5.0, siheung=5.0), view("ansan", pangyo=5.0), view("siheung", pangyo=5.0)], {"pangyo"}),
    ("a view from a site that is not in the topology is ignored",
     [View("elsewhere", NOW, {"pangyo": 9.0}), view("ansan", pangyo=9.0)], set()),
]


@pytest.mark.parametrize("name,views,dead", CASES, ids=[c[0] for c in CASES])
def test_verdicts(name, views, dead):
    got = verdicts(SITES, {v.observer: v for v in views}, NOW, CFG)
    assert {s for s, v in got.items() if v.dead} == dead
    for s in dead:
        assert len(got[s].votes) >= got[s].needed and s not in got[s].votes


def test_reasons_explain_themselves():
    got = verdicts(SITES, {"ansan": view("ansan", pangyo=3.0), "siheung": view("siheung")}, NOW, CFG)
    assert "suspected by ansan" in got["pangyo"].reason and "2 of 3" in got["pangyo"].reason
    got = verdicts(SITES, {"ansan": view("ansan", pangyo=3.0)}, NOW, CFG)
    assert "only 1 fresh views" in got["pangyo"].reason


def test_majority():
    assert [majority(n) for n in (3, 4, 5, 7)] == [2, 3, 3, 4]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=3, max_size=5, unique=True), st.data())
def test_no_site_dies_without_a_majority_of_votes_from_others(sites, data):
    views = {}
    for o in sites:
        if data.draw(st.booleans()):
            views[o] = View(o, NOW - data.draw(st.floats(0, 3)),
                            {t: data.draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])) for t in sites if t != o})
    got = verdicts(sites, views, NOW, CFG)
    for s, v in got.items():
        if v.dead:
            # naive recount from the definition
            voters = [o for o, vw in views.items() if o != s and NOW - vw.published <= CFG.fresh
                      and vw.unreachable_for.get(s, 0) > 0
                      and vw.unreachable_for[s] + NOW - vw.published >= CFG.window]
            assert len(voters) > len(sites) / 2
            assert s not in v.votes


def sview(observer, published=NOW, **silent):
    return View(observer, published, {s: 0.0 for s in SITES if s != observer},
                {f"db/{m}": t for m, t in silent.items()})


STALLS = [
    # (name, views, members stalled by agreement)
    ("everyone hears the primary", [sview("pangyo"), sview("ansan"), sview("siheung")], set()),
    ("two sites get no answer for the window: stalled",
     [sview("ansan", pangyo=1.2), sview("siheung", pangyo=1.0)], {"db/pangyo"}),
    ("the member's own site votes too (a local storage hang)",
     [sview("pangyo", pangyo=1.5), sview("ansan", pangyo=1.5), sview("siheung")], {"db/pangyo"}),
    ("one site alone is not enough", [sview("ansan", pangyo=9.0), sview("siheung")], set()),
    ("silent, but not yet for the window", [sview("ansan", pangyo=0.6), sview("siheung", pangyo=0.6)], set()),
    ("stale views do not vote",
     [sview("ansan", published=NOW - 2, pangyo=9.0), sview("siheung", published=NOW - 2, pangyo=9.0)], set()),
    ("views of an older agent (no such field) are no votes", [view("ansan"), view("siheung")], set()),
    ("two other sites get no answer, but its own site does: not stalled (their links, their CPU)",
     [sview("pangyo", pangyo=0.0), sview("ansan", pangyo=1.2), sview("siheung", pangyo=1.0)], set()),
    ("its own site's view says nothing of it (an older agent, not probing it): the others decide",
     [sview("pangyo"), sview("ansan", pangyo=1.2), sview("siheung", pangyo=1.0)], {"db/pangyo"}),
    ("its own site heard it, but a window ago or more (its agent stalled?): the others decide",
     [sview("pangyo", published=NOW - 1.0, pangyo=0.0), sview("ansan", pangyo=1.2), sview("siheung", pangyo=1.0)],
     {"db/pangyo"}),
    ("its own site's view is stale (its agent away): the others decide",
     [sview("pangyo", published=NOW - 2), sview("ansan", pangyo=1.2), sview("siheung", pangyo=1.0)], {"db/pangyo"}),
    ("its own site and one other get no answer: stalled",
     [sview("pangyo", pangyo=1.0), sview("ansan", pangyo=1.1), sview("siheung")], {"db/pangyo"}),
]


@pytest.mark.parametrize("name,views,stalled", STALLS, ids=[c[0] for c in STALLS])
def test_stall_verdicts(name, views, stalled):
    from firebreak.control.detector import stall_verdicts
    got = stall_verdicts(SITES, {v.observer: v for v in views}, ["db/pangyo"], NOW, CFG, home={"db/pangyo": "pangyo"})
    assert {m for m, v in got.items() if v.dead} == stalled
    if stalled:
        assert "get no answer from its PostgreSQL" in got["db/pangyo"].reason


@pytest.mark.parametrize("interval,timeout,window,fresh,fields", [
    (0.2, 0.2, 1.0, 1.5, []),
    (0.1, 0.1, 0.5, 0.75, []),
    (0.2, 0.2, 0.3, 1.5, ["window"]),        # under two probe intervals
    (0.2, 0.2, 1.0, 0.9, ["fresh"]),         # views stale before a window passes
    (0.2, 0.3, 1.0, 1.5, ["probe_timeout"]),  # rounds overlap
    (0.5, 0.6, 0.8, 0.5, ["window", "fresh", "probe_timeout"]),
])
def test_settings_the_detector_cannot_honour_are_named(interval, timeout, window, fresh, fields):
    from firebreak.control.detector import settings_problems
    assert [f for f, _ in settings_problems(interval, timeout, window, fresh)] == fields


def test_lapsing_links_are_half_a_window_late_by_either_ends_own_measure():
    from firebreak.control.detector import lapsing_links
    cfg = DetectorConfig(window=1.0, fresh=1.5)
    now = 50.0
    views = {"pangyo": View("pangyo", now, {"ansan": 0.5, "siheung": 0.41}),    # 0.41: one round late
             "ansan": View("ansan", now - 0.3, {"pangyo": 0.0, "siheung": 0.45}),  # its age does not count
             "siheung": View("siheung", now - 3, {"pangyo": 9.0, "ansan": 0.0})}   # stale: no say
    assert lapsing_links(SITES, views, now, cfg) == {frozenset(("pangyo", "ansan"))}


def test_a_view_that_has_every_other_site_lapsing_names_no_lapse():
    """Its own agent was paused or starved, or its site is the one flapping, which the far ends'
    views say: read alone, one starved agent in the primary's site made both its links flap (a
    review measured it while a rule released such a site; the rule is gone, the reading stays)."""
    from firebreak.control.detector import lapsing_links
    cfg = DetectorConfig(window=0.5, fresh=0.75)
    now = 50.0
    starved = {"pangyo": View("pangyo", now, {"ansan": 0.3, "siheung": 0.3}),
               "ansan": View("ansan", now, {"pangyo": 0.0, "siheung": 0.0}),
               "siheung": View("siheung", now, {"pangyo": 0.0, "ansan": 0.0})}
    assert lapsing_links(SITES, starved, now, cfg) == set()
    flapping = {"pangyo": View("pangyo", now, {"ansan": 0.3, "siheung": 0.3}),
                "ansan": View("ansan", now, {"pangyo": 0.3, "siheung": 0.0}),
                "siheung": View("siheung", now, {"pangyo": 0.3, "ansan": 0.0})}
    assert lapsing_links(SITES, flapping, now, cfg) == {frozenset(("pangyo", "ansan")), frozenset(("pangyo", "siheung"))}


def test_with_a_site_dead_the_two_living_judge_their_own_link():
    """The rule above needs three living sites: with siheung dead, each survivor's view misses
    siheung all along, and a lapse between the two must still be read (a review of the rule
    measured set() here)."""
    from firebreak.control.detector import lapse_reading
    cfg = DetectorConfig(window=0.5, fresh=0.75)
    now = 50.0
    views = {"pangyo": View("pangyo", now, {"ansan": 0.3, "siheung": 5.0}),
             "ansan": View("ansan", now, {"pangyo": 0.0, "siheung": 5.0})}
    lapsing, unjudged = lapse_reading(SITES, views, now, cfg, dead={"siheung"})
    assert frozenset(("pangyo", "ansan")) in lapsing and unjudged == set()


def test_a_lapse_whose_edges_are_staggered_is_one_lapse_not_two():
    """pangyo's two links lapse out of step: its view reads ansan only, then both (not read:
    unjudged), then ansan only again. ansan's link lapsed once; read as two starts, it would
    flap after one lapse (measured by a review of the rule: both links of a primary's site read
    as flapping after one 0.45 s lapse with staggered ends)."""
    from firebreak.control.detector import Lapses, flap_step, lapse_reading
    cfg = DetectorConfig(window=0.5, fresh=0.75)
    quiet = {"ansan": View("ansan", 0, {"pangyo": 0.0, "siheung": 0.0}),
             "siheung": View("siheung", 0, {"pangyo": 0.0, "ansan": 0.0})}
    phases = [{"ansan": 0.3, "siheung": 0.0}, {"ansan": 0.4, "siheung": 0.3}, {"ansan": 0.5, "siheung": 0.0},
              {"ansan": 0.0, "siheung": 0.0}]
    lapses, flapping = Lapses(), frozenset()
    for i, seen in enumerate(phases):
        now = 50.0 + 0.1 * i
        views = {**{k: View(k, now, v.unreachable_for) for k, v in quiet.items()}, "pangyo": View("pangyo", now, seen)}
        lapsing, unjudged = lapse_reading(SITES, views, now, cfg)
        lapses, flapping = flap_step(lapses, lapsing, now, unjudged=unjudged)
    assert flapping == frozenset()
    assert {link: len(ts) for link, ts in lapses.starts.items()} == {frozenset(("pangyo", "ansan")): 1}


LINK = frozenset(("pangyo", "ansan"))


@pytest.mark.parametrize("name,ticks,flapping_at_end", [
    # ticks: (time, lapsing?) every 0.25 s or so, as the coordinator sees them
    ("one long cut is one lapse, not a flap", [(t / 4, True) for t in range(40)], False),
    ("a link down 0.75 s in every 1.5 s flaps at its second lapse",
     [(t / 4, (t % 6) < 3) for t in range(8)], True),
    ("...and stops flapping once FLAP_SPAN has passed without a new lapse",
     [(t / 4, (t % 6) < 3 and t < 8) for t in range(8 + 22)], False),
    ("two lapses further apart than FLAP_SPAN are no flap",
     [(0.0, True), (0.25, False), (FLAP_SPAN + 0.5, True)], False),
    ("a lapse seen at every tick is not counted again at each", [(0.0, True), (0.25, True), (0.5, True)], False),
    ("a start stamped in the future (the clock stepped back) is dropped", [(100.0, True), (100.25, False),
                                                                          (50.0, False), (50.25, True)], False),
])
def test_flap_step(name, ticks, flapping_at_end):
    from firebreak.control.detector import Lapses, flap_step
    lapses, flapping = Lapses(), frozenset()
    for t, lapsing in ticks:
        lapses, flapping = flap_step(lapses, [LINK] if lapsing else [], t)
    assert (LINK in flapping) == flapping_at_end, name


def test_a_flap_is_caught_at_its_second_lapse():
    from firebreak.control.detector import Lapses, flap_step
    lapses, seen = Lapses(), []
    for t in range(12):  # down 0.75 s of every 1.5 s, ticks every 0.25 s
        lapses, flapping = flap_step(lapses, [LINK] if (t % 6) < 3 else [], t / 4)
        seen.append(LINK in flapping)
    assert seen.index(True) == 6  # 1.5 s: the second lapse's first tick



STILL_TOLD = [
    # (name, told, current, still true); CFG's window is 1.0 s: a gap lapses at 0.5 s
    ("nothing changed but the time", view("ansan", NOW - 0.2), view("ansan", NOW), True),
    ("a site goes silent", view("ansan", NOW - 0.2), view("ansan", NOW, pangyo=0.2), False),
    ("a silent site's gap grew with the view's age: read as it would be",
     view("ansan", NOW - 0.3, pangyo=0.6), view("ansan", NOW, pangyo=0.9), True),
    ("the gap crossed half the window, where lapsing_links reads it as published",
     view("ansan", NOW - 0.3, pangyo=0.3), view("ansan", NOW, pangyo=0.6), False),
    ("a silent site answers again", view("ansan", NOW - 0.3, pangyo=0.6), view("ansan", NOW), False),
    ("the agent's own stall taken off a gap: the told one would read too long",
     view("ansan", NOW - 0.3, pangyo=0.6), view("ansan", NOW, pangyo=0.7), False),
    ("within the tolerance (gaps rounded to the millisecond)",
     view("ansan", NOW - 0.3, pangyo=0.6), view("ansan", NOW, pangyo=0.902), True),
    ("past the tolerance", view("ansan", NOW - 0.3, pangyo=0.6), view("ansan", NOW, pangyo=0.92), False),
    ("a clock step back", view("ansan", NOW + 1), view("ansan", NOW), False),
    ("another observer's view", view("siheung", NOW - 0.2), view("ansan", NOW), False),
    ("a commit-path server goes silent",
     View("ansan", NOW - 0.2, {"pangyo": 0.0, "siheung": 0.0}, {"main/pangyo": 0.0}),
     View("ansan", NOW, {"pangyo": 0.0, "siheung": 0.0}, {"main/pangyo": 0.3}), False),
    ("a server now on the commit path", View("ansan", NOW - 0.2, {"pangyo": 0.0, "siheung": 0.0}, {}),
     View("ansan", NOW, {"pangyo": 0.0, "siheung": 0.0}, {"main/pangyo": 0.0}), False),
    ("a leader key read as bogus", View("ansan", NOW - 0.2, {"pangyo": 0.0, "siheung": 0.0}),
     View("ansan", NOW, {"pangyo": 0.0, "siheung": 0.0}, {}, {"main": 7}), False),
]


@pytest.mark.parametrize("name,told,current,expected", STILL_TOLD, ids=[c[0] for c in STILL_TOLD])
def test_a_published_view_still_tells_the_truth_or_is_put_again(name, told, current, expected):
    from firebreak.control.detector import still_told
    assert still_told(told, current, CFG) is expected


# binary fractions: a sum exactly at the window is at it on both sides, not a rounding apart
GAPS = st.sampled_from([0.0, 0.0, 0.125, 0.25, 0.375, 0.4375, 0.5, 0.75, 0.9375, 1.0, 1.5, 3.0])


@given(GAPS, GAPS, st.sampled_from([0.0625, 0.125, 0.25, 0.5, 1.0]), GAPS, GAPS)
@settings(max_examples=400, deadline=None)
def test_while_a_view_still_reads_true_every_reader_of_views_reads_what_the_current_one_says(p, s, age, q, r):
    """The point of still_told: a put it skips changes nothing the coordinator reads. ansan's
    told view, `age` old, and the one it would put now (each silent gap grown by the age, a
    reachable one 0); siheung's and pangyo's views beside them. Whenever still_told holds, the
    verdicts, cut links and lapsing links are those of the current view."""
    from firebreak.control.detector import cut_links, lapsing_links, still_told
    told = view("ansan", NOW - age, pangyo=p, siheung=s)
    current = view("ansan", NOW, pangyo=p + age if p else 0.0, siheung=s + age if s else 0.0)
    if not still_told(told, current, CFG):
        return
    others = {"siheung": view("siheung", NOW, pangyo=q, ansan=r), "pangyo": view("pangyo", NOW - 0.1, ansan=r)}
    for read in (verdicts, cut_links, lapsing_links):
        assert read(SITES, {"ansan": told, **others}, NOW, CFG) == read(SITES, {"ansan": current, **others}, NOW, CFG)


def test_a_lapse_without_a_break_for_the_hold_is_lasting_whatever_flapped_before():
    from firebreak.control.detector import LASTING, Lapses, flap_step, lasting

    ab, ac = frozenset(("a", "b")), frozenset(("a", "c"))
    lapses = Lapses()
    # a-b drops at 0, 1, 2 (a flap), then stays down from 3; a-c drops once at 0.5 and comes back
    for t, down in [(0.0, {ab}), (0.4, set()), (0.5, {ac}), (0.9, set()), (1.0, {ab}), (1.4, set()),
                    (2.0, {ab}), (2.4, set()), (3.0, {ab})]:
        lapses, _ = flap_step(lapses, down, t)
    assert lasting(lapses, 3.0 + LASTING - 0.1) == frozenset()          # a flap's drop, so far
    assert lasting(lapses, 3.0 + LASTING) == frozenset({ab})             # a cut now
    # down so long that its start has left the flap memory: lasting too
    for t in (4.0, 6.0, 8.5):
        lapses, _ = flap_step(lapses, {ab}, t)
    assert ab in lasting(lapses, 8.5) and ac not in lasting(lapses, 8.5)
