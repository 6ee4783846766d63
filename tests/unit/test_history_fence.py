"""A release's fence in Patroni's /history (failover.fenced_history, stale_fence): the released
primary's timeline is written as past, so that Patroni itself keeps that primary, if it is alive
after all, from taking the key back; and the fence comes out again if nobody takes the key.
Checked with Patroni's own reading of /history (dcs.Cluster.timeline), not a copy of it."""

import json

import pytest

from firebreak.control.detector import Verdict
from firebreak.control.failover import (FENCE_HOLD, FENCE_MARK, ClusterState, DeleteLeader, Member, RestoreHistory,
                                        decide, fenced_history, stale_fence)

NOW = 1_800_000_000.0
SITES = ["pangyo", "ansan", "siheung"]


def patroni_timeline(history: str | None) -> int:
    """The cluster's timeline as Patroni computes it from /history (0: no such key)."""
    from patroni.dcs import Cluster, Status, TimelineHistory
    h = TimelineHistory.from_node(1, history) if history is not None else None
    return Cluster(None, None, None, Status.empty(), [], None, None, h, None, {}).timeline


def primary_raw(timeline=3, lsn=50331808, **extra) -> str:
    return json.dumps({"role": "primary", "state": "running", "api_url": "http://pangyo:8008/patroni",
                       "timeline": timeline, "xlog_location": lsn, **extra})


@pytest.mark.parametrize("history, timeline, patroni_after", [
    (None, 1, 2),                                   # never failed over: Patroni writes no history
    ("[]", 1, 2),                                   # ... or an empty one
    ('[[1,25165984,"no recovery target specified","2026-12-05T10:00:00+00:00","pangyo"]]', 2, 3),
    ('[[1,25165984,"no recovery target specified"],[2,33554592,"no recovery target specified"]]', 3, 4),
])
def test_the_fence_puts_the_released_primarys_timeline_behind_the_cluster(history, timeline, patroni_after):
    assert patroni_timeline(history) in (0, 1, timeline)  # before: the primary is not behind
    fence = fenced_history(history, primary_raw(timeline), NOW)
    assert fence is not None
    # Patroni's guard (ha.py is_healthiest_node): a primary behind the cluster's timeline is not
    # the healthiest node and demotes rather than take the key
    assert patroni_timeline(fence) == patroni_after == timeline + 1
    lines = json.loads(fence)
    assert lines[:-1] == json.loads(history or "[]")  # what was there is kept as it was
    # three items: the new primary's Patroni rewrites a last line that is not of five
    assert lines[-1] == [timeline, 50331808, f"{FENCE_MARK}{NOW:.3f}"]


@pytest.mark.parametrize("history, raw, why", [
    ("[[1,0,\"x\"],[2,0,\"x\"],[3,0,\"x\"]]", primary_raw(3), "already past the primary's timeline"),
    (None, primary_raw(None), "the member key names no timeline (Patroni not sure of it)"),
    (None, primary_raw(True), "a timeline that is no number"),
    (None, primary_raw(0), "timeline 0"),
    (None, "not json", "a member key that does not parse"),
    ('{"not": "a list"}', primary_raw(3), "a history Patroni itself would read as nothing"),
    ('[["a"]]', primary_raw(3), "a line whose timeline is no number"),
])
def test_nothing_is_fenced_when_there_is_nothing_sure_to_fence(history, raw, why):
    assert fenced_history(history, raw, NOW) is None, why


def test_a_bad_lsn_is_written_as_zero_not_copied():
    lines = json.loads(fenced_history(None, primary_raw(2, lsn="0/3000060"), NOW))
    assert lines[-1][:2] == [2, 0]


def member(name, role="replica", raw=None):
    raw = raw or json.dumps({"api_url": f"http://{name}:8008/patroni", "state": "running", "role": role})
    return Member(name, role, "running", f"http://{name}:8008/patroni", revision=40, lease=7, raw=raw)


def cluster(leader="pangyo", history=None, history_revision=0, leader_raw=None, check_timeline=False, raws=None):
    members = {s: member(s, "primary" if s == leader else "replica",
                         leader_raw if s == leader else (raws or {}).get(s)) for s in SITES}
    return ClusterState(leader=leader, leader_revision=12, sync_leader="pangyo", leader_lease=7,
                        sync_standbys=("ansan",), members=members, history=history,
                        history_revision=history_revision, check_timeline=check_timeline)


def verdict(dead=()):
    return {s: Verdict(s, s in dead, ("x", "y") if s in dead else (), (), 2, "test") for s in SITES}


def test_a_release_writes_the_fence_with_the_delete():
    history = '[[1,25165984,"no recovery target specified"]]'
    d = decide(cluster(history=history, history_revision=90, leader_raw=primary_raw(2)), verdict(dead={"pangyo"}),
               {s: s for s in SITES}, now=NOW)
    delete = d.actions[-1]
    assert isinstance(delete, DeleteLeader) and delete.history == fenced_history(history, primary_raw(2), NOW)
    assert delete.history_revision == 90  # compared in the transaction: a history rewritten meanwhile wins
    # /config unread: Patroni keeps what it last read, which may have check_timeline on; no fence
    d = decide(cluster(history=history, leader_raw=primary_raw(2), check_timeline=None), verdict(dead={"pangyo"}),
               {s: s for s in SITES}, now=NOW)
    assert d.failover and d.actions[-1].history is None
    # without the time (a caller that does not give it) nothing is fenced, as before
    d = decide(cluster(history=history, leader_raw=primary_raw(2)), verdict(dead={"pangyo"}), {s: s for s in SITES})
    assert d.actions[-1] == DeleteLeader("pangyo", 12, lease=7)


def fenced(at: float) -> str:
    return json.dumps([[1, 25165984, "no recovery target specified"], [2, 50331808, f"{FENCE_MARK}{at:.3f}"]])


@pytest.mark.parametrize("state, now, restored", [
    (cluster(leader=None, history=fenced(NOW), history_revision=90), NOW + FENCE_HOLD + 0.1,
     RestoreHistory('[[1,25165984,"no recovery target specified"]]', 90)),
    (cluster(leader=None, history=fenced(NOW), history_revision=90), NOW + FENCE_HOLD - 0.1, None),  # not yet
    (cluster(leader="ansan", history=fenced(NOW), history_revision=90), NOW + 60, None),  # a standby took it
    (cluster(leader=None, history='[[1,25165984,"no recovery target specified"]]', history_revision=90),
     NOW + 60, None),                                                                  # no fence of ours
    (cluster(leader=None, history=None), NOW + 60, None),
    (cluster(leader=None, history=json.dumps([[1, 0, FENCE_MARK + "soon"]]), history_revision=3), NOW + 60, None),
    # a standby was promoted after the release (timeline 3) and its key went since: the fence is
    # all that keeps the old primary, on 2, from coming back without its writes
    (cluster(leader=None, history=fenced(NOW), history_revision=90,
             raws={"ansan": json.dumps({"role": "primary", "state": "stopped", "timeline": 3})}), NOW + 60, None),
])
def test_a_fence_nobody_got_past_comes_out_after_the_hold(state, now, restored):
    assert stale_fence(state, now) == restored
    d = decide(state, verdict(), {s: s for s in SITES}, now=now)
    assert d.actions == ((restored,) if restored else ()) and d.failover == bool(restored)


def test_restoring_gives_patroni_back_the_timeline_of_before():
    before = '[[1,25165984,"no recovery target specified"]]'
    fence = fenced_history(before, primary_raw(2), NOW)
    restore = stale_fence(cluster(leader=None, history=fence, history_revision=5), NOW + FENCE_HOLD)
    assert patroni_timeline(restore.value) == patroni_timeline(before) == 2


def test_with_check_timeline_on_nothing_is_fenced():
    """Patroni's standbys check their timelines against the history too when /config sets
    check_timeline: a fence would stop them as well."""
    from firebreak.control.clusters import cluster_state
    from firebreak.control.keys import PatroniKeys

    class KV:
        def __init__(self, value, rev=5, lease=0):
            self.value, self.mod_revision, self.lease = value, rev, lease
    pk = PatroniKeys()
    from patroni.utils import parse_bool
    for value in (True, "true", "on", "YES", 1, "1", False, "off", None, "maybe"):
        state = cluster_state({pk.config: KV(json.dumps({"ttl": 20, "check_timeline": value})),
                               pk.history: KV("[]", rev=9)}, pk)
        assert state.check_timeline == bool(parse_bool(value)), value  # as Patroni reads it
        assert (state.history, state.history_revision) == ("[]", 9)
    on = cluster(history="[]", leader_raw=primary_raw(1))
    on = ClusterState(**{**on.__dict__, "check_timeline": True})
    d = decide(on, verdict(dead={"pangyo"}), {s: s for s in SITES}, now=NOW)
    assert d.failover and d.actions[-1].history is None
