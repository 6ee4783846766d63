"""The coordinator's tick (control/coordinator.py): what the agent saw in, effects out, with no
etcd, no processes and no clock. Each test reads as a story of ticks, as raft's scripts do: the
lease moves, a power cut and its failover, a coordinator lost in the middle of a site's outage,
service outages, etcd's leader placement. What only the lab reached before (coordinator_loop,
observe_and_act, track_incidents) is here, tick by tick."""

from __future__ import annotations

import dataclasses
import json

import pytest

from firebreak.control import coordinator as co
from firebreak.control import detector, incidents, outages
from firebreak.control.drills import Drill
from firebreak.control.detector import View
from firebreak.control.failover import DeleteLeader, DropMember, FenceApi
from firebreak.control.incidents import Incident
from firebreak.control.keys import Keys
from tests.unit.test_failover_decision import SITES, cluster, member

SCOPE = "firebreak"
SITE_OF = {SCOPE: {s: s for s in SITES}}
# The tables' stories are told in whole seconds: a 1 s window, views fresh for 1.5 s (the
# detector's default before 2026-12-05; the default lives in control/config.py DetectorSettings).
TABLE_DETECTOR = (1.0, 1.5)
ME = "siheung"  # holds neither the primary (pangyo) nor the synchronous standby (ansan): the coordinator's place
SETTINGS = co.Settings(ME, tuple(SITES), *TABLE_DETECTOR)


def views(now, down=None, stale=(), missing=()):
    """Every site's view at `now`: `down` is observer -> {target: seconds unreachable}; `stale`
    sites published 3 s ago (no say); `missing` ones published nothing (agent gone)."""
    down = down or {}
    return {s: View(s, now - 3.0 if s in stale else now, {t: down.get(s, {}).get(t, 0.0) for t in SITES if t != s})
            for s in SITES if s not in missing}


def lost(site, seconds, *observers):
    """Views in which `observers` have not reached `site` for `seconds`."""
    return {o: {site: seconds} for o in observers}


def seen(now, vs=None, clusters=None, mine=True, holder=ME, ledger=(), frozen=False, instances=None,
         site_of=SITE_OF, drills=None):
    return co.Seen(now=now, views=vs if vs is not None else views(now),
                   clusters=clusters if clusters is not None else {SCOPE: cluster()}, site_of=site_of,
                   holder=holder, mine=mine, has_lease=mine, frozen=frozen, ledger=ledger,
                   instances=instances or {}, drills=drills or {})


def kinds(ready):
    return [type(e).__name__ for e in ready.effects]


def of(ready, kind):
    return [e for e in ready.effects if isinstance(e, kind)]


# -- the coordinator key -----------------------------------------------------------------------

@pytest.mark.parametrize("me,holder,mine,stale,expected", [
    ("siheung", None, False, (), ["Campaign"]),                # best placed, nobody holds it
    ("pangyo", None, False, (), ["SteerDoors"]),               # the primary's site waits for a better one
    ("pangyo", None, False, ("siheung", "ansan"), ["Campaign"]),  # ... unless none is fresh
    ("ansan", None, False, ("siheung",), ["Campaign"]),        # the standby's site, siheung silent
    ("pangyo", "pangyo", True, (), ["Resign"]),                # holds it; a better site lives
    ("siheung", "pangyo", False, (), ["SteerDoors"]),          # someone else holds it: nothing to do
])
def test_who_campaigns_and_who_resigns(me, holder, mine, stale, expected):
    r = co.tick(co.Settings(me, tuple(SITES), *TABLE_DETECTOR), seen(100.0, views(100.0, stale=stale), holder=holder, mine=mine),
                co.Memory())
    assert kinds(r) == expected


def test_a_lease_move_decides_nothing_else_and_an_agent_that_is_not_coordinator_acts_on_nothing():
    dead = views(101.5, lost("pangyo", 1.2, "ansan", "siheung"))
    r = co.tick(SETTINGS, seen(101.5, dead, holder=None, mine=False), co.Memory())
    assert kinds(r) == ["Campaign"] and r.verdicts["pangyo"].dead  # verdicts for the console all the same
    r = co.tick(SETTINGS, seen(101.5, dead, holder="ansan", mine=False), co.Memory(adopted=True))
    assert kinds(r) == ["SteerDoors"] and not r.memory.adopted  # the next term reads the ledger again


def test_a_takeover_whose_ledger_read_failed_still_fails_over_and_records_later():
    """A failover never waits for bookkeeping: with the ledger unreadable (etcd re-electing after
    losing a member, say), the new coordinator decides and acts; the incident is recorded on the
    first tick that reads the ledger, adopting what is open there."""
    dead = views(101.5, lost("pangyo", 1.2, "ansan", "siheung"))
    r = co.tick(SETTINGS, seen(101.5, dead, ledger=None), co.Memory())
    assert [e.scope for e in of(r, co.Failover)] == [SCOPE]
    assert of(r, co.OpenIncident) == [] and not r.memory.adopted  # nothing recorded, the ledger read again next
    r = co.tick(SETTINGS, seen(101.7, views(101.7, lost("pangyo", 1.4, "ansan", "siheung"))), r.memory)
    assert r.memory.adopted and [i.site for i in (e.incident for e in of(r, co.OpenIncident))] == ["pangyo"]
    r = co.tick(SETTINGS, seen(100.0, ledger=None), co.Memory(adopted=True))  # read once per term
    assert "SteerDoors" in kinds(r)


# -- a power cut of the primary's site ---------------------------------------------------------

def test_a_power_cut_of_the_primarys_site_opens_an_incident_fails_over_and_closes_it():
    m = co.Memory()
    r = co.tick(SETTINGS, seen(100.0), m)
    assert kinds(r) == ["SteerDoors", "PlaceEtcdLeader", "Decided"]
    assert of(r, co.Decided) == [co.Decided(SCOPE, "primary pangyo in pangyo is alive")]
    assert r.memory.last_decision == "primary pangyo in pangyo is alive"
    m = r.memory

    r = co.tick(SETTINGS, seen(100.2), m)  # nothing changed: nothing to say, nothing to write
    assert kinds(r) == ["SteerDoors"]
    m = r.memory

    # Both other sites have not reached pangyo for the window: dead by agreement.
    r = co.tick(SETTINGS, seen(101.5, views(101.5, lost("pangyo", 1.2, "ansan", "siheung"))), m)
    assert kinds(r) == ["SteerDoors", "OpenIncident", "Decided", "Failover"]  # no etcd placement during it
    (opened,) = of(r, co.OpenIncident)
    assert opened.incident == Incident("pangyo", 100.5, detail=r.verdicts["pangyo"].reason)
    (act,) = of(r, co.Failover)
    assert act.scope == SCOPE and [type(a) for a in act.decision.actions] == [FenceApi, DeleteLeader]
    m = r.memory

    m, noted = co.note_failover(m, "pangyo", "released leader key of firebreak/pangyo at 101.600")
    assert noted.failover == "released leader key of firebreak/pangyo at 101.600" and noted.start == 100.5
    assert co.note_failover(m, "ansan", "x") == (m, None)  # no incident there: nothing to note

    # ansan promoted, siheung its synchronous standby now; pangyo's agent publishes nothing.
    promoted = {SCOPE: cluster(leader="ansan", sync=("siheung",))}
    r = co.tick(SETTINGS, seen(103.0, views(103.0, lost("pangyo", 2.7, "ansan", "siheung"), missing=("pangyo",)),
                               promoted), m)
    assert "OpenIncident" not in kinds(r) and "Failover" not in kinds(r)  # one incident, one failover
    assert kinds(r) == ["SteerDoors", "PlaceEtcdLeader", "Decided"]  # siheung stays: none better placed lives
    m = r.memory

    # Suspected by one site still: not over.
    r = co.tick(SETTINGS, seen(109.0, views(109.0, lost("pangyo", 1.0, "ansan"), missing=("pangyo",)), promoted), m)
    assert "CloseIncident" not in kinds(r) and "pangyo" in r.memory.incidents

    # pangyo is back and publishes: it holds neither the primary nor a synchronous standby any
    # more, siheung holds the standby: siheung resigns, pangyo takes over and closes the incident
    # from the ledger, under its original start.
    assert kinds(co.tick(SETTINGS, seen(110.0, views(110.0), promoted), r.memory)) == ["Resign"]
    ledger = (json.dumps(noted.entry("siheung", estate=False)),)
    pangyo = co.Settings("pangyo", tuple(SITES), *TABLE_DETECTOR)
    r = co.tick(pangyo, seen(110.2, views(110.2), promoted, holder="pangyo", ledger=ledger), co.Memory())
    (closed,) = of(r, co.CloseIncident)
    assert (closed.incident.start, closed.incident.end) == (100.5, 110.2)
    assert closed.incident.failover.startswith("released leader key")
    assert r.memory.incidents == {}


def test_frozen_automation_refuses_and_does_not_move_etcds_leader():
    r = co.tick(SETTINGS, seen(101.5, views(101.5, lost("pangyo", 1.2, "ansan", "siheung")), frozen=True),
                co.Memory())
    assert "Failover" not in kinds(r) and "PlaceEtcdLeader" not in kinds(r)
    assert "frozen" in of(r, co.Decided)[0].reason
    assert "OpenIncident" in kinds(r)  # the site is lost all the same: on record


def test_a_dead_standbys_site_drops_its_member_key():
    r = co.tick(SETTINGS, seen(101.5, views(101.5, lost("ansan", 1.2, "pangyo", "siheung"))), co.Memory())
    (act,) = of(r, co.Failover)
    assert act.decision.actions == (DropMember("ansan", 40),)


def test_each_cluster_decides_on_its_own_and_all_fail_over_in_one_tick():
    found = {"a": cluster(leader="pangyo", sync=("ansan",)), "b": cluster(leader="pangyo", sync=("siheung",)),
             "c": cluster(leader="ansan", sync=("siheung",))}
    site_of = {scope: {s: s for s in SITES} for scope in found}
    r = co.tick(SETTINGS, seen(101.5, views(101.5, lost("pangyo", 1.2, "ansan", "siheung")), found, site_of=site_of),
                co.Memory())
    assert sorted(f.scope for f in of(r, co.Failover)) == ["a", "b"]
    assert r.memory.last_decision.startswith("a: primary's site pangyo is dead")
    assert "c: primary ansan in ansan is alive" in r.memory.last_decision



def test_a_primary_postgresql_its_own_site_still_hears_is_not_failed_over():
    """Two other sites get no answer from the primary's PostgreSQL for the window (a lossy link,
    a busy machine), while the agent of its own site, which reaches it without a link between
    sites, does: no stall, no failover (2026-12-06: a living primary was failed over so). When
    its own site hears nothing either, it is stalled. Members are named apart from their sites
    here, so the tick must map a member to its site to ask the right one."""
    names = {"pg-a": "pangyo", "pg-b": "ansan", "pg-c": "siheung"}
    found = {SCOPE: cluster(leader="pg-a", sync=("pg-b",),
                            members={n: member(n, role="primary" if n == "pg-a" else "replica") for n in names})}
    site_of = {SCOPE: names}

    def silent(now, *observers):
        return {s: View(s, now, {t: 0.0 for t in SITES if t != s},
                        {f"{SCOPE}/pg-a": 1.2 if s in observers else 0.0}) for s in SITES}
    r = co.tick(SETTINGS, seen(101.5, silent(101.5, "ansan", "siheung"), found, site_of=site_of), co.Memory())
    assert of(r, co.Failover) == []
    assert "its own site pangyo gets answers" in r.stalls[f"{SCOPE}/pg-a"].reason
    r = co.tick(SETTINGS, seen(101.5, silent(101.5, "pangyo", "siheung"), found, site_of=site_of), co.Memory())
    assert [f.scope for f in of(r, co.Failover)] == [SCOPE]
    assert "answers nothing" in r.memory.last_decision


def test_a_flapping_link_to_the_synchronous_standby_drops_it_at_its_second_lapse():
    """ansan (the synchronous standby) and pangyo (the primary) lose each other for 0.75 s of
    every 1.5 s: never cut for the window, and every commit stalls at each lapse. Measured on the
    lab before this: 9.48 s of stopped commits. The coordinator moves the standby at the second
    lapse, and never refuses anything (no outage, no alert) while it waits for it."""
    from tests.unit.test_failover_decision import three
    mem, dropped_at = co.Memory(), None
    for t in range(16):
        now = 100.0 + t / 4
        down = 0.6 if (t % 6) < 3 else 0.0  # past half the window, never the whole of it
        r = co.tick(SETTINGS, seen(now, views(now, lost("ansan", down, "pangyo")),
                                   clusters={SCOPE: three()}), mem)
        mem = r.memory
        assert not r.memory.refused
        if of(r, co.Failover) and dropped_at is None:
            dropped_at = now
            assert of(r, co.Failover)[0].decision.actions == (DropMember("ansan", 40),)
    assert dropped_at == 101.5


def test_the_links_read_as_flapping_are_logged_when_they_change_and_only_then():
    """The stress benchmark counts these reads: the price of acting on a flap is how often a
    lossy link is read as one."""
    mem, reads = co.Memory(), []
    for t in range(60):
        now = 100.0 + t / 4
        down = 0.6 if t < 16 and (t % 6) < 3 else 0.0
        r = co.tick(SETTINGS, seen(now, views(now, lost("ansan", down, "pangyo"))), mem)
        mem = r.memory
        reads += [(now, e.links) for e in of(r, co.Flaps)]
    link = frozenset({"pangyo", "ansan"})
    # Flapping from the second lapse, and no longer once fewer than two lapses began within the span.
    assert reads == [(101.5, frozenset({link})), (101.5 + detector.FLAP_SPAN, frozenset())], reads


def test_a_site_lost_and_back_is_one_lapse_not_a_flap():
    """A power cut of siheung for 3 s (dead by verdict, then back, one view clearing a tick after
    the other), then ansan (the synchronous standby) cut from the primary: the standby is dropped
    at once, never refused. The loss and the return were one lapse, not two."""
    from tests.unit.test_failover_decision import three
    mem = co.Memory()
    timeline = [(100.0 + t / 5, t) for t in range(40)]
    for now, t in timeline:
        down = {}
        if 0 <= t < 15:      # siheung silent for 3 s
            down = lost("siheung", 0.2 * t + 0.6, "pangyo", "ansan")
        elif t == 15:        # back: ansan sees it at once, pangyo a round later
            down = lost("siheung", 0.6, "pangyo")
        elif t >= 22:        # ansan cut from pangyo
            down = lost("ansan", 0.2 * (t - 22) + 0.6, "pangyo")
        r = co.tick(SETTINGS, seen(now, views(now, down), clusters={SCOPE: three()}), mem)
        mem = r.memory
        assert not r.memory.refused, (now, r.memory.last_decision)
        if t >= 22 and of(r, co.Failover):
            assert of(r, co.Failover)[0].decision.actions == (DropMember("ansan", 40),)
            return
    raise AssertionError("the cut standby was never dropped")

# -- a coordinator lost in the middle of a site's outage (issue 31) ----------------------------

def ledger_value(entry: dict) -> str:
    return json.dumps(entry)


def test_a_new_coordinator_adopts_the_open_incident_and_closes_it_under_its_original_start():
    # siheung coordinated, opened ansan's incident, and was lost 4 s later.
    first = co.tick(SETTINGS, seen(101.5, views(101.5, lost("ansan", 1.2, "pangyo", "siheung"))), co.Memory())
    (opened,) = of(first, co.OpenIncident)
    ledger = (ledger_value(opened.incident.entry("siheung", estate=False)),
              # the drill's own record of the same cut, and older, closed business: none is adopted
              ledger_value({"site": "ansan", "start": 100.4, "end": 113.0, "kind": "power", "source": "drill"}),
              ledger_value({"site": "ansan", "start": 50.0, "end": 60.0, "kind": "site-down", "source": "agent"}),
              ledger_value({"service": "claims", "start": 100.5, "end": None, "kind": "service-outage",
                            "source": "agent"}),
              "not json")
    # pangyo, the only agent left (ansan off, siheung's agent gone), takes over: one fresh view
    # (its own) sees ansan unreachable, not enough for a verdict, enough to keep it open.
    pangyo = co.Settings("pangyo", tuple(SITES), *TABLE_DETECTOR)
    gone = views(106.0, lost("ansan", 5.7, "pangyo"), missing=("ansan", "siheung"))
    r = co.tick(pangyo, seen(106.0, gone, holder="pangyo", ledger=ledger), co.Memory())
    assert not r.verdicts["ansan"].dead and r.verdicts["ansan"].votes == ("pangyo",)
    assert "OpenIncident" not in kinds(r) and "CloseIncident" not in kinds(r)
    assert r.memory.incidents == {"ansan": Incident("ansan", 100.5, detail=opened.incident.detail)}
    assert r.memory.outages == {}  # no services: service outages are not this agent's to carry

    # ansan's power is back: pangyo reaches it (etcd starts first, its agent last): closed under
    # the original start, so under the original key. (Once ansan's agent publishes, pangyo, the
    # primary's site, resigns for it.)
    back = views(118.0, missing=("ansan", "siheung"))
    r = co.tick(pangyo, seen(118.0, back, holder="pangyo", ledger=None), r.memory)
    (closed,) = of(r, co.CloseIncident)
    assert (closed.incident.start, closed.incident.end) == (100.5, 118.0)
    keys = Keys()
    assert keys.ledger_entry(closed.incident.start, "ansan") == keys.ledger_entry(opened.incident.start, "ansan")
    assert closed.incident.entry("pangyo", estate=False)["source"] == "agent"


def test_a_coordinator_taking_over_again_trusts_the_ledger_not_its_memory():
    """An incident another coordinator closed meanwhile is not closed again with a later end."""
    stale = co.Memory(incidents={"ansan": Incident("ansan", 100.5)}, adopted=False)
    closed = ledger_value(Incident("ansan", 100.5, end=110.0).entry("pangyo", estate=False))
    r = co.tick(SETTINGS, seen(130.0, ledger=(closed,)), stale)
    assert r.memory.incidents == {} and "CloseIncident" not in kinds(r)


def test_an_incident_found_over_on_taking_over_is_closed_and_says_its_end_is_a_bound():
    ledger = (json.dumps(Incident("ansan", 100.5, detail="2 of 3 sites").entry("pangyo", estate=False)),)
    r = co.tick(SETTINGS, seen(104.0, ledger=ledger), co.Memory())
    (closed,) = of(r, co.CloseIncident)
    assert (closed.incident.start, closed.incident.end) == (100.5, 104.0)
    assert closed.incident.detail.startswith("2 of 3 sites; found back by siheung on taking over")


def test_incidents_adopt_only_the_agents_open_site_incidents_newest_first():
    def e(site, start, end=None, source="agent", kind="site-down"):
        return json.dumps({"site": site, "start": start, "end": end, "kind": kind, "source": source})
    found = incidents.adopt([e("ansan", 10.0), e("ansan", 20.0), e("pangyo", 5.0, end=9.0),
                             e("siheung", 7.0, source="drill"), e("siheung", 8.0, kind="power"),
                             e("gwangju", 3.0), json.dumps({"site": "pangyo"}), "[]"], SITES)
    assert found == {"ansan": Incident("ansan", 20.0)}


def test_an_estate_names_the_site_as_the_incidents_service():
    inc = Incident("ansan", 100.5, detail="2 of 3")
    assert inc.entry("pangyo", estate=True)["service"] == "site ansan"
    assert "service" not in inc.entry("pangyo", estate=False)
    assert inc.entry("pangyo", estate=False) == {"site": "ansan", "start": 100.5, "end": None, "kind": "site-down",
                                                 "detail": "2 of 3", "failover": "", "recorded_by": "pangyo",
                                                 "source": "agent"}


# -- service outages (an estate) ---------------------------------------------------------------

ESTATE = co.Settings(ME, tuple(SITES), *TABLE_DETECTOR, services={
    "users-db": co.Service(()),  # a cluster is a service of its own name, as outages.causes reads it
    "login": co.Service(("pangyo", "ansan"), databases=("firebreak",)),
    "notes": co.Service(("siheung",), calls=("login",)),
})


def test_service_outages_start_with_the_incident_and_follow_dependencies():
    m = co.tick(ESTATE, seen(100.0, ledger=()), co.Memory()).memory
    r = co.tick(ESTATE, seen(101.5, views(101.5, lost("pangyo", 1.2, "ansan", "siheung"))), m)
    writes = {e.write.service: e.write for e in of(r, co.RecordOutage)}
    assert set(writes) == {"firebreak", "login", "notes"}
    assert {w.start for w in writes.values()} == {100.5}  # the incident's start, not the tick's
    assert writes["notes"].cause.startswith("login is out: firebreak is out")
    assert kinds(r).index("Failover") < kinds(r).index("RecordOutage")


def test_no_instance_in_a_living_site_is_an_outage_once_probed():
    m = co.Memory(adopted=True)
    unprobed = co.tick(ESTATE, seen(100.0), m)
    assert of(unprobed, co.RecordOutage) == []  # just started: not taken for lost
    probed = co.tick(ESTATE, seen(100.0, instances={"notes": {"siheung": False}, "login": {"pangyo": True}}), m)
    assert [(e.write.service, e.write.cause) for e in of(probed, co.RecordOutage)] == [
        ("notes", "no instance runs in a living site")]


def test_a_new_coordinator_carries_open_service_outages_on():
    ledger = (json.dumps({"service": "notes", "start": 90.0, "end": None, "cause": "no instance runs in a living site",
                          "kind": "service-outage", "source": "agent"}),)
    r = co.tick(ESTATE, seen(100.0, ledger=ledger, instances={"notes": {"siheung": True}}), co.Memory())
    (w,) = [e.write for e in of(r, co.RecordOutage)]
    assert (w.service, w.start, w.end) == ("notes", 90.0, 100.0)


# -- etcd's leader -----------------------------------------------------------------------------

def test_etcds_leader_is_placed_every_two_seconds_and_every_tick_while_a_primarys_link_is_cut():
    m = co.tick(SETTINGS, seen(100.0), co.Memory()).memory
    assert m.placed_at == 100.0
    assert "PlaceEtcdLeader" not in kinds(co.tick(SETTINGS, seen(101.0), m))
    assert "PlaceEtcdLeader" in kinds(co.tick(SETTINGS, seen(102.1), m))
    cut = views(100.6, lost("siheung", 1.1, "pangyo"))  # the primary's site cannot reach siheung
    r = co.tick(SETTINGS, seen(100.6, cut), m)
    (place,) = of(r, co.PlaceEtcdLeader)
    assert place.cut == frozenset({frozenset({"pangyo", "siheung"})}) and place.primary_sites == ("pangyo",)
    locked = co.Settings(ME, tuple(SITES), *TABLE_DETECTOR, can_place_etcd_leader=False)
    assert "PlaceEtcdLeader" not in kinds(co.tick(locked, seen(100.6, cut), m))


def test_a_flapping_link_moves_etcds_leader_to_be_heard_but_not_back_until_the_links_settle():
    """One site's links cut and healed every second (a flap): each cut may need leadership moved
    where the primary's site hears it, at once; moving it back to a better-ranked site waits until
    no primary's site has had a cut link for RANK_SETTLE seconds."""
    m = co.Memory()
    flags = []
    for now in (100.0, 100.6, 101.2, 101.8, 102.4):  # cut, healed, cut, healed, cut
        cutting = int(round((now - 100.0) / 0.6)) % 2 == 0
        vs = views(now, lost("siheung", 1.1, "pangyo")) if cutting else views(now)
        r = co.tick(SETTINGS, seen(now, vs), m)
        m = r.memory
        flags += [(now, p.by_rank, bool(p.cut)) for p in of(r, co.PlaceEtcdLeader)]
    assert flags and all(not by_rank for _, by_rank, _ in flags), flags  # only moves that restore reach
    assert any(cut for _, _, cut in flags)
    quiet_since = 102.4
    for now in (104.5, 108.0, quiet_since + co.RANK_SETTLE - 0.1):
        r = co.tick(SETTINGS, seen(now), m)
        m = r.memory
        assert all(not p.by_rank for p in of(r, co.PlaceEtcdLeader)), now
    r = co.tick(SETTINGS, seen(quiet_since + co.RANK_SETTLE + co.PLACE_EVERY + 0.5), m)
    (place,) = of(r, co.PlaceEtcdLeader)
    assert place.by_rank and not place.cut  # settled: placed by rank again
    held = co.PlaceEtcdLeader(("pangyo",), ("ansan",), tuple(SITES), frozenset(), by_rank=False)
    assert co.etcd_move(held, 1, MEMBERS) is None  # in the primary's site, and staying there for now
    assert co.etcd_move(dataclasses.replace(held, by_rank=True), 1, MEMBERS).to_site == "siheung"


MEMBERS = [{"ID": 1, "name": "pangyo"}, {"ID": 2, "name": "ansan"}, {"ID": 3, "name": "siheung"}]


def test_a_whole_site_flapping_moves_etcds_leader_out_of_it():
    """siheung (holding etcd's leader, the best-ranked site: neither primary nor standby) loses
    both its links for 0.6 s of every 1.5 s: each lapse costs etcd its leader, and the
    coordinator its lease. Rank alone keeps leadership there; once the links flap, the placement
    the coordinator asks for takes it to the site on fewest flapping links, by rank among them
    (ansan, the standby's, before pangyo, the primary's)."""
    mem, moves = co.Memory(), []
    for t in range(20):
        now = 100.0 + t / 4
        down = lost("siheung", 0.6, "pangyo", "ansan") if (t % 6) < 3 else {}
        r = co.tick(SETTINGS, seen(now, views(now, down)), mem)
        mem = r.memory
        moves += [(now, co.etcd_move(p, 3, MEMBERS)) for p in of(r, co.PlaceEtcdLeader)]
    assert moves and moves[0][1] is None  # before the links flap: best placed, it stays
    flapped = [(now, m) for now, m in moves if m is not None]
    assert flapped, moves
    now, move = flapped[0]
    assert move.to_site == "ansan" and move.why == "away from a flapping link", flapped
    assert now <= 101.5 + co.PLACE_EVERY  # at the first placement once the second lapse began


@pytest.mark.parametrize("leader,cut,to,why", [
    (1, frozenset(), "siheung", "away from the primaries' sites"),
    (3, frozenset(), None, ""),                                          # already best placed
    (3, frozenset({frozenset({"pangyo", "siheung"})}), "ansan", "a primary's site could not hear it"),
    (99, frozenset(), None, ""),                                         # a leader etcd does not list
])
def test_where_etcds_leadership_moves(leader, cut, to, why):
    place = co.PlaceEtcdLeader(("pangyo",), ("ansan",), tuple(SITES), cut)
    move = co.etcd_move(place, leader, MEMBERS)
    assert (move.to_site if move else None) == to
    if move:
        assert move.why == why and move.leader["ID"] == leader and move.target_id == {"ansan": 2, "siheung": 3}[to]


def test_a_rank_move_between_sites_on_as_many_flapping_links_says_so():
    """ansan's whole site flaps: pangyo and siheung are each on one flapping link; leadership
    goes from the primary's site to siheung by rank, not to get away from a flap."""
    flaps = frozenset({frozenset({"ansan", "pangyo"}), frozenset({"ansan", "siheung"})})
    move = co.etcd_move(co.PlaceEtcdLeader(("pangyo",), ("ansan",), tuple(SITES), frozenset(), flapping=flaps),
                        1, MEMBERS)
    assert move.to_site == "siheung" and move.why == "away from the primaries' sites"


# -- what every agent reads off the same facts -------------------------------------------------

def test_own_view_counts_silence_only_past_one_probe_round():
    found = {SCOPE: cluster()}
    v = co.own_view("siheung", ["pangyo", "ansan"], {"pangyo": 99.8, "ansan": 98.0}, {"firebreak/pangyo": 99.0},
                    found, 100.0, grace=0.5)
    assert v.unreachable_for == {"pangyo": 0.0, "ansan": 2.0}
    assert v.postgres_silent_for == {"firebreak/pangyo": 1.0} and v.bogus_leaders == {}


def test_own_view_counts_silence_only_of_what_the_last_completed_round_did_not_hear():
    """A round that runs late (the agent starved of CPU) leaves every stamp old at once: only
    sites and servers a completed round got no answer from read as silent."""
    found = {SCOPE: cluster()}
    late = co.own_view("siheung", ["pangyo", "ansan"], {"pangyo": 99.0, "ansan": 99.0}, {"firebreak/pangyo": 99.0},
                       found, 100.0, grace=0.4, unanswered=set())
    assert late.unreachable_for == {"pangyo": 0.0, "ansan": 0.0} and late.postgres_silent_for == {"firebreak/pangyo": 0.0}
    cut = co.own_view("siheung", ["pangyo", "ansan"], {"pangyo": 99.0, "ansan": 99.0}, {"firebreak/pangyo": 99.0},
                      found, 100.0, grace=0.4, unanswered={"ansan", "firebreak/pangyo"})
    assert cut.unreachable_for == {"pangyo": 0.0, "ansan": 1.0} and cut.postgres_silent_for == {"firebreak/pangyo": 1.0}
    # and the door of a late agent keeps its routes: it still reaches every site
    r = co.tick(SETTINGS, seen(100.0, mine=False, holder="ansan"), co.Memory())
    doors = {SCOPE: cluster(members={"pangyo": member("pangyo", role="primary"), "ansan": member("ansan")})}
    assert co.door_routes(late, r.verdicts, doors, SITE_OF, 3, frozenset(), 0.5)[SCOPE].rw == "pangyo"


def test_door_routes_refuse_writes_where_this_site_reaches_no_majority():
    found = {SCOPE: cluster(members={"pangyo": member("pangyo", role="primary"), "ansan": member("ansan")})}
    r = co.tick(SETTINGS, seen(100.0, mine=False, holder="ansan"), co.Memory())
    alone = View(ME, 100.0, {"pangyo": 2.0, "ansan": 2.0})
    assert co.door_routes(alone, r.verdicts, found, SITE_OF, 3, frozenset(), 0.5)[SCOPE].rw is None
    fine = View(ME, 100.0, {"pangyo": 0.0, "ansan": 0.0})
    assert co.door_routes(fine, r.verdicts, found, SITE_OF, 3, frozenset(), 0.5)[SCOPE].rw == "pangyo"


def test_a_door_refuses_a_site_only_once_this_agent_has_missed_it_for_the_window():
    """One unanswered round is a flap's lapse or a lost packet as often as a death, and a death
    is acted on at the verdict, which needs the window anyway: the door keeps the primary until
    this agent has missed its site for the whole window (as a cut link is read)."""
    found = {SCOPE: cluster(members={"pangyo": member("pangyo", role="primary"), "ansan": member("ansan")})}
    r = co.tick(SETTINGS, seen(100.0, mine=False, holder="ansan"), co.Memory())
    lapse = View(ME, 100.0, {"pangyo": 0.3, "ansan": 0.0})
    assert co.door_routes(lapse, r.verdicts, found, SITE_OF, 3, frozenset(), 0.5)[SCOPE].rw == "pangyo"
    gone = View(ME, 100.0, {"pangyo": 0.5, "ansan": 0.0})
    routes = co.door_routes(gone, r.verdicts, found, SITE_OF, 3, frozenset(), 0.5)[SCOPE]
    assert routes.rw is None and "pangyo" not in routes.ro
    # both others lapsing briefly: still a majority reached, writes still go
    both = View(ME, 100.0, {"pangyo": 0.3, "ansan": 0.3})
    assert co.door_routes(both, r.verdicts, found, SITE_OF, 3, frozenset(), 0.5)[SCOPE].rw == "pangyo"


def test_suspected_and_dead_sites():
    r = co.tick(SETTINGS, seen(101.5, views(101.5, {**lost("pangyo", 1.2, "ansan", "siheung"),
                                                      "pangyo": {"ansan": 1.5}})), co.Memory(adopted=True))
    assert co.dead_sites(r.verdicts) == {"pangyo"}
    assert co.suspected_sites(r.verdicts) == {"pangyo", "ansan"}


def test_a_refused_failover_is_remembered_for_the_alert_and_cleared_when_it_no_longer_is():
    dead = views(101.5, lost("pangyo", 1.2, "ansan", "siheung"))
    r = co.tick(SETTINGS, seen(101.5, dead, frozen=True), co.Memory())
    assert r.memory.refused == {SCOPE}
    r = co.tick(SETTINGS, seen(101.7), r.memory)
    assert r.memory.refused == frozenset()


# -- a drill declared over a site (issue 31: drill entries never count as outages) --------------

def declared(*sites, drill="power-cut@1000", until=200.0):
    """The drills the shell read: each site declared by the drill runner until `until`."""
    return {s: Drill(s, drill, 99.0, until) for s in sites}


PANGYO_LOST = views(101.5, lost("pangyo", 1.2, "ansan", "siheung"))


@pytest.mark.parametrize("drills,now,expected", [
    (None, 101.5, ""),                                        # no drill: a real loss
    (declared("pangyo"), 101.5, "power-cut@1000"),            # the drill's own site
    (declared("ansan"), 101.5, ""),                           # a drill elsewhere hides nothing here
    (declared("ansan", "pangyo", drill="partition@7"), 101.5, "partition@7"),  # either end of a cut
    (declared("pangyo", until=101.4), 101.5, ""),             # past its planned end: not believed
    (declared("pangyo", until=101.5), 101.5, "power-cut@1000"),
], ids=["none", "this-site", "other-site", "partition", "past-until", "at-until"])
def test_a_site_lost_under_a_declared_drill_is_recorded_as_the_drills(drills, now, expected):
    r = co.tick(SETTINGS, seen(now, PANGYO_LOST, drills=drills), co.Memory())
    (opened,) = of(r, co.OpenIncident)
    assert opened.incident.drill == expected
    entry = opened.incident.entry(ME, estate=False)
    assert entry["source"] == ("drill" if expected else "agent")
    assert entry.get("drill") == (expected or None)  # a real loss's entry is as it always was


def test_a_drill_changes_what_is_recorded_never_what_is_done():
    """A drill exercises the real path: the same verdicts, decisions and failover, effect for
    effect; only the incident's classification differs."""
    real = co.tick(SETTINGS, seen(101.5, PANGYO_LOST), co.Memory())
    drill = co.tick(SETTINGS, seen(101.5, PANGYO_LOST, drills=declared("pangyo")), co.Memory())
    assert kinds(drill) == kinds(real) == ["SteerDoors", "OpenIncident", "Decided", "Failover"]
    assert of(drill, co.Failover) == of(real, co.Failover) and of(drill, co.Decided) == of(real, co.Decided)
    assert drill.verdicts == real.verdicts
    (a,), (b,) = of(real, co.OpenIncident), of(drill, co.OpenIncident)
    assert b.incident == dataclasses.replace(a.incident, drill="power-cut@1000")


def test_a_drill_incident_stays_the_drills_until_it_closes_whoever_closes_it():
    r = co.tick(SETTINGS, seen(101.5, PANGYO_LOST, drills=declared("pangyo")), co.Memory())
    (opened,) = of(r, co.OpenIncident)
    # The drill runner ends (its declaration goes) before the site is back: still the drill's.
    r = co.tick(SETTINGS, seen(110.0, views(110.0)), r.memory)
    (closed,) = of(r, co.CloseIncident)
    assert closed.incident.drill == "power-cut@1000" and closed.incident.start == opened.incident.start
    # Taken over mid-drill: the next term's coordinator adopts it from the ledger as the drill's
    # and closes it under the same key, as the drill's; the drill runner's own entry is not adopted.
    ledger = (json.dumps(opened.incident.entry(ME, estate=False)),
              json.dumps({"site": "pangyo", "start": 100.2, "end": None, "kind": "site-down", "source": "drill",
                          "scenario": "power-cut", "drill": "power-cut@1000"}))
    r = co.tick(SETTINGS, seen(112.0, views(112.0), ledger=ledger), co.Memory())
    (closed,) = of(r, co.CloseIncident)
    assert closed.incident.drill == "power-cut@1000" and closed.incident.start == 100.5
    assert closed.incident.entry(ME, estate=False)["source"] == "drill"


@pytest.mark.parametrize("entry,adopted", [
    ({"source": "agent"}, ""),
    ({"source": "drill", "drill": "d@1", "recorded_by": "siheung"}, "d@1"),   # the agents', under a drill
    ({"source": "drill", "drill": "d@1"}, None),            # no agent recorded it: the drill runner's
    ({"source": "drill", "recorded_by": "siheung"}, None),  # a drill entry without its drill: not ours
    ({"source": "drill", "drill": 7, "recorded_by": "siheung"}, None),
    ({"source": "forged", "drill": "d@1", "recorded_by": "siheung"}, None),
], ids=["real", "agents-drill", "runners", "no-id", "id-not-text", "other-source"])
def test_which_open_entries_a_new_coordinator_carries_on(entry, adopted):
    site = {"site": "ansan", "start": 10.0, "end": None, "kind": "site-down", **entry}
    svc = {"service": "notes", "start": 10.0, "end": None, "kind": "service-outage", "cause": "x", **entry}
    found_site = incidents.adopt([json.dumps(site)], SITES)
    found_svc = outages.adopt([json.dumps(svc)])
    assert (found_site["ansan"].drill if found_site else None) == adopted
    assert (found_svc["notes"].drill if found_svc else None) == adopted


@pytest.mark.parametrize("drills,expected", [
    ({}, {"firebreak": "", "login": "", "notes": ""}),
    (declared("pangyo"), {"firebreak": "power-cut@1000", "login": "power-cut@1000", "notes": "power-cut@1000"}),
    (declared("ansan"), {"firebreak": "power-cut@1000", "login": "power-cut@1000", "notes": "power-cut@1000"}),
    (declared("siheung"), {"firebreak": "", "login": "", "notes": ""}),  # notes runs there, but is out for login
], ids=["none", "primarys-site", "standbys-site", "elsewhere"])
def test_service_outages_under_a_drill_follow_their_root_causes_site(drills, expected):
    """pangyo (the primary's site) is lost: the cluster is out, login through it, notes through
    login. A drill over the cluster's commit path (primary's or synchronous standby's site) makes
    all three the drill's; one over a site the root cause does not lie in makes none."""
    m = co.tick(ESTATE, seen(100.0, ledger=()), co.Memory()).memory
    r = co.tick(ESTATE, seen(101.5, PANGYO_LOST, drills=drills), m)
    writes = {e.write.service: e.write for e in of(r, co.RecordOutage)}
    assert {n: w.drill for n, w in writes.items()} == expected
    assert {n: w.entry(ME)["source"] for n, w in writes.items()} == {
        n: "drill" if d else "agent" for n, d in expected.items()}


def test_a_service_outage_keeps_its_drill_through_cause_changes_and_its_close():
    m = co.tick(ESTATE, seen(100.0, ledger=()), co.Memory()).memory
    r = co.tick(ESTATE, seen(101.5, PANGYO_LOST, drills=declared("pangyo")), m)
    # ansan promoted (no synchronous standby yet: siheung, holding none, stays coordinator): the
    # cluster is back; the drill's declaration is gone by now.
    promoted = {SCOPE: cluster(leader="ansan", sync=())}
    r = co.tick(ESTATE, seen(103.0, views(103.0, lost("pangyo", 2.7, "ansan", "siheung")), promoted), r.memory)
    closed = {e.write.service: e.write for e in of(r, co.RecordOutage)}
    assert {n: (w.end, w.drill) for n, w in closed.items()} == {
        n: (103.0, "power-cut@1000") for n in ("firebreak", "login", "notes")}


@pytest.mark.parametrize("drills,expected", [
    (declared("siheung"), "power-cut@1000"),   # every site notes runs in is declared
    (declared("pangyo"), ""),                  # notes does not run there
])
def test_no_instance_under_a_drill_is_the_drills(drills, expected):
    r = co.tick(ESTATE, seen(100.0, instances={"notes": {"siheung": False}, "login": {"pangyo": True}},
                             drills=drills), co.Memory(adopted=True))
    assert [(e.write.service, e.write.drill) for e in of(r, co.RecordOutage)] == [("notes", expected)]


def test_a_leaderless_cluster_with_a_member_in_the_drilled_site_is_the_drills():
    """A paused PostgreSQL (`drill pause --component postgres`): no site is dead, the primary is
    replaced, and for a moment the cluster has no leader; which member was lost is no longer in
    its keys, so a member in the drilled site makes its outage the drill's."""
    m = co.tick(ESTATE, seen(100.0, ledger=()), co.Memory()).memory
    leaderless = {SCOPE: cluster(leader=None, sync=())}
    r = co.tick(ESTATE, seen(100.2, clusters=leaderless, drills=declared("pangyo")), m)
    assert {e.write.service: e.write.drill for e in of(r, co.RecordOutage)}["firebreak"] == "power-cut@1000"
    two = {SCOPE: cluster(leader=None, sync=(), members={s: member(s) for s in ("ansan", "siheung")})}
    r = co.tick(ESTATE, seen(100.2, clusters=two, drills=declared("pangyo")), m)
    assert {e.write.service: e.write.drill for e in of(r, co.RecordOutage)}["firebreak"] == ""


def test_own_view_counts_no_silence_while_the_agent_itself_was_stalled():
    """An agent paused 0.5 s (SIGSTOP, a VM stall) finds every stamp 0.5 s old when it runs again:
    that was its own absence. Measured with a 0.5 s window: its site's database door refused
    writes after most pauses, and etcd's leadership moved 15 times in 6 minutes."""
    found = {SCOPE: cluster()}
    stalls = co.note_stall((), 99.35, 99.9, keep=10.0)
    v = co.own_view("siheung", ["pangyo", "ansan"], {"pangyo": 99.3, "ansan": 98.0}, {"firebreak/pangyo": 99.3},
                    found, 100.0, grace=0.2, unanswered={"pangyo", "ansan", "firebreak/pangyo"}, stalls=stalls)
    # pangyo: 0.7 s since its answer, 0.55 of it stalled: 0.15, within one round's grace
    assert v.unreachable_for["pangyo"] == 0.0 and v.postgres_silent_for == {"firebreak/pangyo": 0.0}
    # ansan was silent before the stall too: only the stall is taken off (2.0 - 0.55)
    assert v.unreachable_for["ansan"] == 1.45


def test_stalls_overlapping_are_merged_and_old_or_future_ones_forgotten():
    stalls = co.note_stall(co.note_stall((), 10.0, 11.0, keep=5.0), 10.5, 12.0, keep=5.0)
    assert stalls == ((10.0, 12.0),)
    assert co.absent(stalls, 9.0, 20.0) == 2.0
    assert co.absent(stalls, 11.5, 20.0) == 0.5
    assert co.note_stall(stalls, 30.0, 30.1, keep=5.0) == ((30.0, 30.1),)
    assert co.note_stall(stalls, 5.0, 5.1, keep=5.0) == ((5.0, 5.1),)  # the clock stepped back


def test_an_agent_stalled_again_and_again_still_sees_a_dead_site_dead():
    """Stalls taken off a gap are capped (the agent passes its window): late wakes that add up to
    most of the time must not keep a dead site's silence from ever reaching the window."""
    found = {SCOPE: cluster()}
    stalls = ()
    for t in range(90, 100):
        stalls = co.note_stall(stalls, t + 0.1, t + 0.9, keep=10.0)
    v = co.own_view("siheung", ["pangyo", "ansan"], {"pangyo": 90.0, "ansan": 99.95}, {}, found, 100.0,
                    grace=0.2, unanswered={"pangyo"}, stalls=stalls, max_absent=0.5)
    assert v.unreachable_for["pangyo"] == 9.5


@pytest.mark.parametrize("blind_since,clean_started,now,blind", [
    (None, 100.0, 100.5, False),       # no stall: rounds count as ever
    (100.7, 100.0, 100.75, True),      # stalled since the last clean round began
    (100.7, 100.71, 100.75, False),    # a clean round began after it
    (100.7, 100.0, 101.3, False),      # a window after the stall: counts again, however long it lasts
    (100.7, None, 100.75, True),       # no clean round yet
    (100.7, 100.0, 100.6, False),      # the clock stepped back past it
])
def test_after_a_stall_only_a_clean_rounds_misses_are_silence(blind_since, clean_started, now, blind):
    assert co.stalled_since_clean_round(blind_since, clean_started, now, window=0.5) is blind
