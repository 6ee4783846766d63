"""Each service's own outage for the ledger (control/outages.py): pure, stepped like the agent does."""

from __future__ import annotations

import json

from firebreak.control import outages
from firebreak.control.failover import ClusterState

SITE_OF = {"p": "pangyo", "a": "ansan", "s": "siheung"}
DBS = {"login": ["users-db"], "messaging": ["messaging-db"], "claims": ["claims-db"], "notes": []}
CALLS = {"messaging": ["login"], "notes": ["messaging"]}


def cluster(leader, sync=()):
    return ClusterState(leader, 1, leader, tuple(sync), {})


def test_a_cluster_is_out_while_it_has_no_living_primary_or_its_standby_is_lost():
    assert outages.cluster_out(cluster("p", ["a"]), {"pangyo"}, SITE_OF) == "its primary's site pangyo is lost"
    assert outages.cluster_out(cluster(None), {"pangyo"}, SITE_OF).startswith("no primary")
    assert outages.cluster_out(cluster("s", ["p"]), {"pangyo"}, SITE_OF) == "its synchronous standby's site pangyo is lost"
    assert outages.cluster_out(cluster("s", ["a"]), {"pangyo"}, SITE_OF) is None
    assert outages.cluster_out(cluster("s", ["a"]), set(), SITE_OF, refused=True) == "its failover was refused"


def test_a_service_is_out_with_what_it_needs_and_says_the_root_cause():
    now = outages.causes({"users-db": "its primary's site pangyo is lost"}, {}, DBS, CALLS)
    assert set(now) == {"users-db", "login", "messaging", "notes"}  # claims is untouched
    assert now["notes"] == ("messaging is out: login is out: users-db is out: its primary's site pangyo is lost",
                            "users-db")
    lone = outages.causes({}, {"claims": "no instance runs in a living site"}, DBS, CALLS)
    assert lone == {"claims": ("no instance runs in a living site", "claims")}


def test_outages_open_at_the_incident_start_and_close_when_the_cluster_is_back():
    out = outages.causes({"users-db": "its primary's site pangyo is lost"}, {}, DBS, CALLS)
    open_, writes = outages.step({}, out, now=101.0, started={"users-db": 100.0})
    assert {w.service: (w.start, w.end) for w in writes} == {
        "users-db": (100.0, None), "login": (100.0, None), "messaging": (100.0, None), "notes": (100.0, None)}
    same, writes = outages.step(open_, out, now=101.2, started={"users-db": 100.0})
    assert writes == [] and same == open_                           # nothing new: nothing written
    closed, writes = outages.step(same, {}, now=101.6, started={})
    assert closed == {} and {w.service: (w.start, w.end) for w in writes} == {
        "users-db": (100.0, 101.6), "login": (100.0, 101.6), "messaging": (100.0, 101.6), "notes": (100.0, 101.6)}
    e = writes[0].entry("siheung")
    assert e["kind"] == "service-outage" and e["recorded_by"] == "siheung" and e["cause"]


def test_a_changed_cause_is_rewritten_under_the_same_start():
    first = outages.causes({"users-db": "its primary's site pangyo is lost"}, {}, {"users-db": []}, {})
    open_, _ = outages.step({}, first, now=10.0, started={"users-db": 9.0})
    later = outages.causes({"users-db": "no primary: a new one is being elected"}, {}, {"users-db": []}, {})
    open_, writes = outages.step(open_, later, now=10.5, started={})
    assert [(w.service, w.start, w.end, w.cause) for w in writes] == [
        ("users-db", 9.0, None, "no primary: a new one is being elected")]


def test_service_ledger_entries_are_kept_and_expire_like_the_others():
    from firebreak.control.keys import Keys
    from firebreak.control.maintenance import ledger_expired
    k = Keys()
    key = k.ledger_service_entry(1000.5, "login")
    assert key == "/firebreak/ledger/1000.500-svc-login"
    assert ledger_expired([key], k.ledger, cutoff=2000.0) == [key]
    assert ledger_expired([key], k.ledger, cutoff=500.0) == []


def test_a_new_coordinator_carries_on_the_outages_still_open_in_the_ledger():
    entries = [
        {"service": "login", "start": 100.0, "end": None, "cause": "users-db is out", "kind": "service-outage"},
        {"service": "login", "start": 50.0, "end": 60.0, "cause": "old", "kind": "service-outage"},   # closed
        {"service": "claims", "start": 90.0, "end": None, "cause": "x", "kind": "service-outage"},
        {"site": "pangyo", "start": 99.0, "end": None, "kind": "site-down"},                           # a site's
        {"service": "broken", "start": "soon", "end": None, "kind": "service-outage"},                # unreadable
        {"service": "login", "start": 101.0, "end": None, "kind": "service-outage", "source": "drill"},  # a drill's
    ]
    open_ = outages.adopt([json.dumps(e) for e in entries] + ["not json", "[1]"])
    assert open_ == {"login": outages.Open("login", 100.0, "users-db is out"),
                     "claims": outages.Open("claims", 90.0, "x")}
    # back now: closed under the earlier coordinator's start, not reopened from the new one's clock
    _, writes = outages.step(open_, {}, now=103.0, started={})
    assert {(w.service, w.start, w.end) for w in writes} == {("login", 100.0, 103.0), ("claims", 90.0, 103.0)}
