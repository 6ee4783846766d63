"""The failover decision and the placement rules: cluster state and verdicts in, actions out."""

import json
from dataclasses import replace

import pytest

from firebreak.control.detector import Verdict
from firebreak.control.failover import (UNREACHABLE_API, ClusterState, DeleteLeader, FenceApi, Member, decide)
from firebreak.control.placement import coordination_move, etcd_leader_target

SITES = ["pangyo", "ansan", "siheung"]
SITE_OF = {s: s for s in SITES}


def member(name, state="running", role="replica"):
    raw = json.dumps({"api_url": f"http://{name}:8008/patroni", "state": state, "role": role})
    return Member(name, role, state, f"http://{name}:8008/patroni", revision=40, lease=7, raw=raw)


def cluster(leader="pangyo", sync=("ansan",), sync_leader=None, members=None):
    members = members if members is not None else {s: member(s, role="primary" if s == leader else "replica")
                                                   for s in SITES}
    return ClusterState(leader=leader, leader_revision=12, sync_leader=sync_leader or leader, leader_lease=7,
                        sync_standbys=tuple(sync), members=members)


def verdict(dead=()):
    return {s: Verdict(s, s in dead, ("x", "y") if s in dead else (), (), 2, "test") for s in SITES}


def test_dead_primary_site_releases_the_leader_key_after_fencing_its_api():
    d = decide(cluster(), verdict(dead={"pangyo"}), SITE_OF)
    assert d.failover and not d.refused
    fence, delete = d.actions
    assert isinstance(fence, FenceApi) and fence.member == "pangyo" and fence.revision == 40 and fence.lease == 7
    assert json.loads(fence.value)["api_url"] == UNREACHABLE_API
    assert json.loads(fence.value)["state"] == "running"  # everything else of the member key kept
    # and its session's lease revoked after: back within the ttl, its Patroni must not take a stale
    # copy of the deleted key for its own (failover.DeleteLeader)
    assert delete == DeleteLeader("pangyo", 12, lease=7)
    assert "ansan" in d.reason


@pytest.mark.parametrize("name,state,verdicts,frozen,refused,needle", [
    ("primary alive", cluster(), verdict(), False, False, "is alive"),
    ("a replica's site dead", cluster(), verdict(dead={"siheung"}), False, False, "is alive"),
    ("no leader key", cluster(leader=None), verdict(dead={"pangyo"}), False, False, "electing"),
    ("frozen", cluster(), verdict(dead={"pangyo"}), True, True, "frozen"),
    ("no synchronous standby", cluster(sync=()), verdict(dead={"pangyo"}), False, True, "names no synchronous"),
    ("/sync written for another leader", cluster(sync_leader="siheung"), verdict(dead={"pangyo"}), False, True,
     "names no synchronous"),
    ("sync standby's site dead too", cluster(), verdict(dead={"pangyo", "ansan"}), False, True, "dead too"),
    ("sync standby not running", cluster(members={"pangyo": member("pangyo"), "ansan": member("ansan", "stopped"),
                                                  "siheung": member("siheung")}),
     verdict(dead={"pangyo"}), False, True, "state stopped"),
    ("sync standby's Patroni gone", cluster(members={"pangyo": member("pangyo"), "siheung": member("siheung")}),
     verdict(dead={"pangyo"}), False, True, "no member key"),
])
def test_no_action(name, state, verdicts, frozen, refused, needle):
    d = decide(state, verdicts, SITE_OF, frozen=frozen)
    assert d.actions == () and not d.failover
    assert d.refused == refused
    assert needle in d.reason


def test_member_names_map_to_sites():
    state = cluster(leader="pg1", sync=("pg2",), members={"pg1": member("pg1"), "pg2": member("pg2")})
    d = decide(state, verdict(dead={"pangyo"}), {"pg1": "pangyo", "pg2": "ansan"})
    assert d.failover


def test_an_already_fenced_member_is_not_rewritten_again():
    m = member("pangyo")
    fenced = Member("pangyo", m.role, m.state, UNREACHABLE_API, 41, 7, m.raw)
    d = decide(cluster(members={"pangyo": fenced, "ansan": member("ansan"), "siheung": member("siheung")}),
               verdict(dead={"pangyo"}), SITE_OF)
    assert [type(a) for a in d.actions] == [DeleteLeader]


@pytest.mark.parametrize("me,holder,primary,sync,others,move", [
    ("siheung", None, "pangyo", ["ansan"], ["pangyo", "ansan"], "campaign"),   # neither primary nor sync
    ("ansan", None, "pangyo", ["ansan"], ["pangyo", "siheung"], "stay"),       # the free site is better placed
    ("ansan", None, "pangyo", ["ansan"], ["pangyo"], "campaign"),              # ... unless it is dead
    ("pangyo", None, "pangyo", ["ansan"], ["ansan"], "stay"),                  # the primary's site leaves it to others
    ("pangyo", None, "pangyo", ["ansan"], [], "campaign"),                     # unless nobody else is alive
    ("pangyo", "pangyo", "pangyo", ["ansan"], ["ansan"], "resign"),
    ("ansan", "ansan", "pangyo", ["ansan"], ["pangyo", "siheung"], "resign"),
    ("ansan", "ansan", "pangyo", ["ansan"], ["pangyo"], "stay"),
    ("pangyo", "pangyo", "pangyo", ["ansan"], [], "stay"),
    ("siheung", "ansan", "pangyo", ["ansan"], ["pangyo", "ansan"], "stay"),    # someone holds it: wait for the resign
    ("ansan", None, None, [], ["pangyo"], "campaign"),                         # no primary known: anyone
])
def test_coordinator_placement(me, holder, primary, sync, others, move):
    assert coordination_move(me, holder, primary, others, sync) == move


@pytest.mark.parametrize("leader,primary,sync,alive,target", [
    ("siheung", "pangyo", ["ansan"], SITES, None),          # already in the best place
    ("pangyo", "pangyo", ["ansan"], SITES, "siheung"),      # out of the primary's site, to the free one
    ("ansan", "pangyo", ["ansan"], SITES, "siheung"),       # out of the sync standby's site too
    ("pangyo", "pangyo", ["ansan", "siheung"], SITES, "ansan"),
    ("pangyo", "pangyo", ["ansan"], ["pangyo", "ansan"], "ansan"),
    ("ansan", "pangyo", ["ansan"], ["pangyo", "ansan"], None),  # nothing better alive
    ("pangyo", "pangyo", [], ["pangyo"], None),             # nowhere to go
    (None, "pangyo", [], SITES, None),
])
def test_etcd_leader_moves_out_of_the_sites_a_failover_needs(leader, primary, sync, alive, target):
    assert etcd_leader_target(leader, primary, sync, alive) == target


def stall(dead):
    return {"pangyo": Verdict("pangyo", dead, ("ansan", "siheung") if dead else (), (), 2, "test")}


def test_a_primary_whose_postgresql_answers_nothing_is_failed_over_though_its_site_lives():
    d = decide(cluster(), verdict(), SITE_OF, stalled=stall(True))
    assert d.failover and isinstance(d.actions[-1], DeleteLeader) and "answers nothing" in d.reason
    assert isinstance(d.actions[0], FenceApi)  # its Patroni's API may hang on it: fenced as a dead site's


@pytest.mark.parametrize("name,state,stalled,frozen,needle", [
    ("not stalled by agreement", cluster(), stall(False), False, "is alive"),
    ("frozen", cluster(), stall(True), True, "frozen"),
    ("no synchronous standby to take over", cluster(sync=()), stall(True), False, "names no synchronous"),
    ("a stalled synchronous standby with no other streaming standby stays", cluster(leader="ansan", sync=("pangyo",)),
     stall(True), False, "acknowledging alone"),
])
def test_a_stall_is_acted_on_under_the_same_rules(name, state, stalled, frozen, needle):
    d = decide(state, verdict(), SITE_OF, frozen=frozen, stalled=stalled)
    assert not d.failover and d.actions == () and needle in d.reason


def cut(*pairs):
    return {frozenset(p) for p in pairs}


@pytest.mark.parametrize("leader,primary,sync,cuts,target", [
    # The measured gray failure: the primary's site cannot hear etcd's leader. Leadership goes to
    # the site every primary's site reaches, though it ranks worse (the sync standby's).
    ("siheung", "pangyo", ["ansan"], cut(("pangyo", "siheung")), "ansan"),
    # siheung cut from both: the same.
    ("siheung", "pangyo", ["ansan"], cut(("pangyo", "siheung"), ("ansan", "siheung")), "ansan"),
    # A cut link that does not touch a primary's site leaves leadership where it is...
    ("siheung", "pangyo", ["ansan"], cut(("ansan", "siheung")), None),
    # ...and ranking never moves leadership into a site with a cut link.
    ("ansan", "pangyo", ["ansan"], cut(("pangyo", "siheung")), None),
    ("pangyo", "pangyo", ["ansan"], cut(("ansan", "siheung")), None),
])
def test_etcd_leadership_sits_where_every_primarys_site_hears_it(leader, primary, sync, cuts, target):
    assert etcd_leader_target(leader, primary, sync, SITES, cuts) == target


def test_without_rank_moves_only_a_leader_a_primarys_site_cannot_hear_is_moved():
    assert etcd_leader_target("pangyo", "pangyo", ["ansan"], SITES, (), by_rank=False) is None
    assert etcd_leader_target("pangyo", "pangyo", ["ansan"], SITES, ()) == "siheung"
    assert etcd_leader_target("siheung", "pangyo", ["ansan"], SITES, cut(("pangyo", "siheung")),
                              by_rank=False) == "ansan"


@pytest.mark.parametrize("leader,flaps,cuts,by_rank,target", [
    # The synchronous standby's whole site flaps (both its links): leadership leaves it for the
    # steadiest other site, by rank among equals (siheung holds neither primary nor standby)...
    ("ansan", cut(("ansan", "pangyo"), ("ansan", "siheung")), set(), True, "siheung"),
    # ...even while rank moves wait (by_rank False after a primary's cut link)...
    ("ansan", cut(("ansan", "pangyo"), ("ansan", "siheung")), set(), False, "siheung"),
    # ...and a leader already on the fewest flapping links stays, though the site ranks worse.
    ("siheung", cut(("ansan", "pangyo"), ("ansan", "siheung")), set(), True, None),
    # Between sites on as many flapping links, rank decides as ever.
    ("pangyo", cut(("ansan", "pangyo"), ("ansan", "siheung")), set(), True, "siheung"),
    ("pangyo", cut(("ansan", "pangyo"), ("ansan", "siheung")), set(), False, None),
    # One flapping link: leadership goes to the site on neither end, the primary's if need be.
    ("ansan", cut(("ansan", "siheung")), set(), True, "pangyo"),
    # A rank move never goes into a site with a flapping link (the leader's own has none).
    ("pangyo", cut(("siheung", "ansan")), set(), True, None),
    # Reach first: a leader the primary's site cannot hear goes to a reachable site. Not into the
    # primary's, whose link to ansan flaps: there etcd's quorum would hang on that link (siheung's
    # is cut); ansan hears the primary between lapses and siheung always...
    ("siheung", cut(("ansan", "pangyo")), cut(("pangyo", "siheung")), True, "ansan"),
    # ...the primary's own when its links are steady and no other site reaches it...
    ("siheung", set(), cut(("pangyo", "siheung"), ("pangyo", "ansan")), True, "pangyo"),
    # ...and nowhere while the primary's whole site flaps and the leader's link to it is read cut
    # at a lapse: every other site hears it no better (it once moved into the flapping site).
    ("siheung", cut(("ansan", "pangyo"), ("siheung", "pangyo")), cut(("pangyo", "siheung")), True, None),
    ("siheung", cut(("ansan", "pangyo"), ("siheung", "pangyo")), cut(("pangyo", "siheung")), False, None),
    # ...and to ansan when the flapping link is another one (fewest cut links first, as ever).
    ("siheung", cut(("ansan", "siheung")), cut(("pangyo", "siheung")), True, "ansan"),
])
def test_etcd_leadership_leaves_a_site_whose_links_flap(leader, flaps, cuts, by_rank, target):
    assert etcd_leader_target(leader, "pangyo", ["ansan"], SITES, cuts, by_rank=by_rank, flapping=flaps) == target


def test_a_link_to_a_dead_site_flaps_no_more():
    """ansan-siheung flapped, then ansan died: its links are the verdicts' business, and etcd's
    leader, best placed in siheung, stays (it once went to the primary's site and back)."""
    living = ["pangyo", "siheung"]
    assert etcd_leader_target("siheung", "pangyo", ["ansan"], living, (), flapping=cut(("ansan", "siheung"))) is None


def test_etcd_leadership_goes_to_the_site_with_fewest_cut_links_even_the_primarys():
    sites = SITES + ["d"]
    cuts = cut(("pangyo", "d"), ("ansan", "siheung"), ("ansan", "x"), ("siheung", "y"))
    assert etcd_leader_target("d", "pangyo", ["ansan"], sites, cuts) == "pangyo"


def streaming(name, role="replica"):
    # As Patroni 4 writes a streaming replica's member key.
    m = member(name, state="running", role=role)
    from dataclasses import replace
    return replace(m, replication_state="streaming")


def three(leader="pangyo", sync=("ansan",)):
    return cluster(leader=leader, sync=sync, members={"pangyo": member("pangyo", role="primary"),
                                                      "ansan": streaming("ansan"), "siheung": streaming("siheung")})


def test_a_cut_link_to_the_synchronous_standby_makes_a_reachable_standby_synchronous():
    from firebreak.control.failover import DropMember
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")))
    assert d.failover and d.actions == (DropMember("ansan", 40),)
    assert "siheung" in d.reason


@pytest.mark.parametrize("name,state,cuts,frozen,refused,needle", [
    ("no cut", three(), cut(), False, False, "is alive"),
    ("a cut that does not touch the primary", three(), cut(("ansan", "siheung")), False, False, "is alive"),
    ("the async standby's link is cut: commits do not wait for it", three(), cut(("pangyo", "siheung")), False,
     False, "is alive"),
    ("no other standby the primary reaches", three(), cut(("pangyo", "ansan"), ("pangyo", "siheung")), False, True,
     "acknowledging alone"),
    ("the other standby is not streaming", cluster(members={"pangyo": member("pangyo", role="primary"),
                                                            "ansan": streaming("ansan"),
                                                            "siheung": member("siheung", state="starting")}),
     cut(("pangyo", "ansan")), False, True, "acknowledging alone"),
    ("frozen", three(), cut(("pangyo", "ansan")), True, True, "frozen"),
])
def test_a_cut_standby_is_dropped_only_when_safe(name, state, cuts, frozen, refused, needle):
    d = decide(state, verdict(), SITE_OF, frozen=frozen, cut=cuts)
    assert d.actions == () and not d.failover and d.refused == refused and needle in d.reason


def test_cut_links_need_one_fresh_end_for_the_window():
    from firebreak.control.detector import DetectorConfig, View, cut_links
    cfg = DetectorConfig(window=1.0, fresh=1.5)
    now = 50.0
    views = {"pangyo": View("pangyo", now, {"ansan": 1.2, "siheung": 0.0}),
             "ansan": View("ansan", now, {"pangyo": 0.4, "siheung": 0.0}),
             "siheung": View("siheung", now - 3, {"pangyo": 9.0, "ansan": 0.0})}  # stale: no say
    assert cut_links(SITES, views, now, cfg) == {frozenset(("pangyo", "ansan"))}
    # A dead site's links are not cut links: its loss is the verdicts' business.
    assert cut_links(SITES, views, now, cfg, dead=["ansan"]) == set()


@pytest.mark.parametrize("siheung_sees_ansan, cut", [
    (0.0, True),    # the third site reaches ansan: the link alone is cut
    (0.2, False),   # it misses ansan too, not yet for the window: ansan's site is going silent
    (0.8, False),
])
def test_a_site_going_silent_to_a_third_site_too_is_no_cut_link(siheung_sees_ansan, cut):
    """bench/detector.py's slow power cuts: the synchronous standby's agent saw the dying primary's
    site down for the window a tick before the coordinator did; read as a cut link, the standby's
    member key was dropped and the failover waited for Patroni to write it again."""
    from firebreak.control.detector import DetectorConfig, View, cut_links
    cfg = DetectorConfig(window=1.0, fresh=1.5)
    now = 50.0
    views = {"pangyo": View("pangyo", now, {"ansan": 1.0, "siheung": 0.0}),
             "siheung": View("siheung", now, {"ansan": siheung_sees_ansan, "pangyo": 0.0}),
             "ansan": View("ansan", now - 1.0, {"pangyo": 0.0, "siheung": 0.0})}
    assert cut_links(SITES, views, now, cfg) == ({frozenset(("pangyo", "ansan"))} if cut else set())


def with_leader(leader, lease=7, members=None):
    c = cluster(members=members)
    from dataclasses import replace
    return replace(c, leader=leader, leader_lease=lease)


@pytest.mark.parametrize("state,why", [
    (with_leader("x-test"), "which is no member"),
    (with_leader("pangyo", lease=0), "holds no lease"),
])
def test_a_leader_key_patroni_did_not_write_is_removed_once_a_majority_agrees(state, why):
    assert why in state.bogus_leader()
    waiting = decide(state, verdict(), SITE_OF)
    assert waiting.actions == () and "waiting for a majority" in waiting.reason
    d = decide(state, verdict(), SITE_OF, bogus_agreed=True)
    # a key nobody's session wrote: its lease, if any, is not revoked
    assert d.actions == (DeleteLeader(state.leader, 12, lease=0),) and why in d.reason
    frozen = decide(state, verdict(), SITE_OF, frozen=True, bogus_agreed=True)
    assert frozen.actions == () and frozen.refused


def test_patronis_own_leader_key_is_never_bogus():
    assert with_leader("pangyo").bogus_leader() is None
    assert with_leader(None).bogus_leader() is None
    # A leader whose member key did not parse is unknown, not bogus.
    from dataclasses import replace
    from firebreak.control.failover import Ignored
    c = replace(with_leader("pangyo", members={"ansan": member("ansan")}),
                ignored=(Ignored("/service/firebreak/members/pangyo", 3, "bad"),))
    assert c.bogus_leader() is None


def test_bogus_leaders_need_a_majority_reading_the_same_revision():
    from firebreak.control.detector import DetectorConfig, View, agreed_bogus_leaders
    cfg, now = DetectorConfig(window=1.0, fresh=1.5), 10.0

    def v(site, rev, published=now):
        return View(site, published, {}, {}, {"firebreak": rev} if rev else {})
    assert agreed_bogus_leaders(SITES, {"pangyo": v("pangyo", 5), "ansan": v("ansan", 5)}, now, cfg) == {"firebreak": 5}
    assert agreed_bogus_leaders(SITES, {"pangyo": v("pangyo", 5), "ansan": v("ansan", 6)}, now, cfg) == {}
    assert agreed_bogus_leaders(SITES, {"pangyo": v("pangyo", 5), "ansan": v("ansan", 5, now - 5)}, now, cfg) == {}
    assert agreed_bogus_leaders(SITES, {"pangyo": v("pangyo", 5)}, now, cfg) == {}


def test_a_stalled_synchronous_standby_is_replaced_by_one_that_streams():
    """Found by a chaos run: the synchronous standby's PostgreSQL paused 11 s stopped writes for
    all of it. Its site answers; its PostgreSQL does not."""
    from firebreak.control.failover import DropMember
    d = decide(three(sync=("ansan",)), verdict(), SITE_OF,
               stalled={"ansan": Verdict("ansan", True, ("pangyo", "siheung"), (), 2, "test")})
    assert d.failover and d.actions == (DropMember("ansan", 40),) and "siheung" in d.reason
    # The primary's own stall is a failover, not a standby's drop.
    d = decide(three(sync=("ansan",)), verdict(), SITE_OF, stalled=stall(True))
    assert isinstance(d.actions[-1], DeleteLeader)


def test_a_flapping_link_to_the_synchronous_standby_makes_a_steady_standby_synchronous():
    from firebreak.control.failover import DropMember
    d = decide(three(), verdict(), SITE_OF, flapping=cut(("pangyo", "ansan")))
    assert d.failover and d.actions == (DropMember("ansan", 40),)
    assert "siheung" in d.reason and "keeps failing" in d.reason


def test_a_cut_standby_is_replaced_even_by_one_across_a_flapping_link():
    """The synchronous standby cannot acknowledge at all; the other acknowledges between its
    link's lapses: better than every commit waiting (a refusal here once held writes for a whole cut)."""
    from firebreak.control.failover import DropMember
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")), flapping=cut(("pangyo", "siheung")))
    assert d.failover and not d.refused and d.actions == (DropMember("ansan", 40),) and "siheung" in d.reason


@pytest.mark.parametrize("name,flapping,cuts,frozen,refused,needle", [
    # The primary's site flaps, but so does the link between the others: no steady side to move to
    ("every link flaps", cut(("pangyo", "ansan"), ("pangyo", "siheung"), ("ansan", "siheung")), cut(), False, False,
     "is alive"),
    ("the others' link is cut", cut(("pangyo", "ansan"), ("pangyo", "siheung")), cut(("ansan", "siheung")), False,
     False, "is alive"),
    ("frozen, only flapping", cut(("pangyo", "ansan")), cut(), True, False, "is alive"),
    ("the async standby's link flaps", cut(("pangyo", "siheung")), cut(), False, False, "is alive"),
])
def test_a_flapping_standby_is_dropped_only_when_a_steady_one_exists(name, flapping, cuts, frozen, refused, needle):
    d = decide(three(), verdict(), SITE_OF, frozen=frozen, cut=cuts, flapping=flapping)
    assert d.actions == () and not d.failover and d.refused == refused and needle in d.reason


def test_a_primary_site_whose_every_link_flaps_is_ridden_out():
    """Releasing it as soon as its links read as flapping was built and measured (with Patroni's
    switchover, then with the history fence): the ordinary client's writes waited as long, on
    TCP's backoff before any move. Nothing to do, nothing refused (no outage recorded)."""
    flaps = cut(("pangyo", "ansan"), ("pangyo", "siheung"))
    primary = Member("pangyo", "primary", "running", "http://pangyo:8008/patroni", revision=40, lease=7,
                     raw=json.dumps({"role": "primary", "state": "running", "api_url": "http://pangyo:8008/patroni",
                                     "timeline": 4, "xlog_location": 1}))
    fenceable = replace(three(), members={**three().members, "pangyo": primary}, check_timeline=False)
    for state in (fenceable, replace(fenceable, sync_standbys=("ansan", "siheung"), quorum_commit=True,
                                     sync_quorum=1)):
        d = decide(state, verdict(), SITE_OF, flapping=flaps, now=1000.0)
        assert d.actions == () and not d.refused and "is alive" in d.reason
    # and a dead site's release in maintenance mode is refused: Patroni's standbys would not race
    d = decide(replace(three(), paused=True), verdict(dead={"pangyo"}), SITE_OF)
    assert d.refused and d.actions == () and "paused" in d.reason


def test_a_view_that_misses_every_other_site_names_no_cut_link():
    """Its observer is the one gone quiet (isolated, or its agent paused or starved: measured, a
    paused agent in the primary's site moved etcd's leadership 15 times in 6 minutes); one link
    down is still a cut link."""
    from firebreak.control.detector import DetectorConfig, View, cut_links
    cfg = DetectorConfig(window=0.5, fresh=0.75)
    now = 50.0
    alone = {"ansan": View("ansan", now, {"pangyo": 0.6, "siheung": 0.6}),
             "pangyo": View("pangyo", now, {"ansan": 0.0, "siheung": 0.0}),
             "siheung": View("siheung", now, {"ansan": 0.0, "pangyo": 0.0})}
    assert cut_links(SITES, alone, now, cfg) == set()
    one = {**alone, "ansan": View("ansan", now, {"pangyo": 0.6, "siheung": 0.0})}
    assert cut_links(SITES, one, now, cfg) == {frozenset(("ansan", "pangyo"))}


def test_a_partition_of_some_links_keeps_its_cut_links_where_no_verdict_can_come():
    """Four sites, a, b and c cut from one another, d reaching all: no site can be voted dead (each
    is missed by two of four), so the links are cut and the synchronous standby can be replaced.
    Three sites, the third missing both ends of a cut link briefly (starved): the cut still counts,
    since a view that misses every other site is no evidence of anything."""
    from firebreak.control.detector import DetectorConfig, View, cut_links
    cfg = DetectorConfig(window=0.5, fresh=0.75)
    now = 50.0
    four = ["a", "b", "c", "d"]
    views = {"a": View("a", now, {"b": 0.6, "c": 0.6, "d": 0.0}),
             "b": View("b", now, {"a": 0.6, "c": 0.6, "d": 0.0}),
             "c": View("c", now, {"a": 0.6, "b": 0.6, "d": 0.0}),
             "d": View("d", now, {"a": 0.0, "b": 0.0, "c": 0.0})}
    assert cut_links(four, views, now, cfg) == {frozenset(p) for p in (("a", "b"), ("a", "c"), ("b", "c"))}
    starved = {"pangyo": View("pangyo", now, {"ansan": 0.6, "siheung": 0.0}),
               "ansan": View("ansan", now, {"pangyo": 0.6, "siheung": 0.0}),
               "siheung": View("siheung", now, {"pangyo": 0.3, "ansan": 0.3})}
    assert cut_links(SITES, starved, now, cfg) == {frozenset(("pangyo", "ansan"))}


def test_a_flapping_primary_site_s_lapse_drops_no_standby_for_another_equally_cut_off():
    """The primary's whole site flaps: one lapse reads the synchronous standby's link as cut while
    the other standby's link is failing too (lapsing), or flaps. Dropping one for the other once
    churned /sync until it named no standby when the verdict came, and the failover was refused."""
    # the first lapse, before any flap is read: the other standby's link is failing too
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")), lapsing=cut(("pangyo", "siheung")))
    assert d.actions == () and not d.failover and not d.refused and "is alive" in d.reason
    # later lapses: both links flap, one reads cut at this lapse
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")),
               flapping=cut(("pangyo", "ansan"), ("pangyo", "siheung")))
    assert d.actions == () and not d.failover and not d.refused and "is alive" in d.reason
    # a real cut of the standby's link while the other is steady is still acted on at once...
    from firebreak.control.failover import DropMember
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")), lapsing=cut(("pangyo", "ansan")))
    assert d.failover and d.actions == (DropMember("ansan", 40),)
    # ...and a standby whose PostgreSQL answers nothing is replaced across a flapping link, as before
    ansan_stalled = {"ansan": Verdict("ansan", True, ("pangyo", "siheung"), (), 2, "test")}
    d = decide(three(), verdict(), SITE_OF, stalled=ansan_stalled, flapping=cut(("pangyo", "ansan"),
                                                                              ("pangyo", "siheung")))
    assert d.failover and d.actions == (DropMember("ansan", 40),)


def test_no_replacement_for_a_standby_that_cannot_acknowledge_is_refused_when_the_others_are_cut_or_dead():
    """Only a lapse that may end (failing now, not read cut, its site not dead) spares the refusal:
    a cut link or a dead site is no such lapse, and the refusal records the outage."""
    ansan_stalled = {"ansan": Verdict("ansan", True, ("pangyo", "siheung"), (), 2, "test")}
    d = decide(three(), verdict(), SITE_OF, stalled=ansan_stalled, cut=cut(("pangyo", "siheung")),
               lapsing=cut(("pangyo", "siheung")))
    assert d.refused and d.actions == () and "acknowledging alone" in d.reason
    d = decide(three(), verdict(dead={"siheung"}), SITE_OF, cut=cut(("pangyo", "ansan")),
               lapsing=cut(("pangyo", "ansan"), ("pangyo", "siheung")))
    assert d.refused and d.actions == ()


def test_a_cut_that_flapped_before_is_a_hard_cut_once_it_has_lasted():
    from firebreak.control.failover import DropMember
    flaps = cut(("pangyo", "ansan"), ("pangyo", "siheung"))
    # read cut at a drop of the flap: nothing
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")), flapping=flaps)
    assert d.actions == ()
    # down without a break for detector.LASTING: the standby is replaced across the flapping link
    d = decide(three(), verdict(), SITE_OF, cut=cut(("pangyo", "ansan")), flapping=flaps,
               lasting=cut(("pangyo", "ansan")))
    assert d.failover and d.actions == (DropMember("ansan", 40),)


def test_etcd_leadership_leaves_a_site_cut_from_the_primary_once_the_cut_has_lasted_even_after_a_flap():
    flaps = cut(("pangyo", "siheung"), ("pangyo", "ansan"))
    cuts = cut(("pangyo", "siheung"))
    assert etcd_leader_target("siheung", "pangyo", ["ansan"], SITES, cuts, flapping=flaps) is None
    assert etcd_leader_target("siheung", "pangyo", ["ansan"], SITES, cuts, flapping=flaps,
                              lasting=cuts) == "ansan"
