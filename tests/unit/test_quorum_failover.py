"""Quorum commit (Patroni 4's synchronous_mode: quorum): the agent releases a dead primary's
leader key only when Patroni's own leader race can end, with a winner that holds every
acknowledged write. The oracle is the installed Patroni's `Ha._is_healthiest_node`, called on
the same cluster: if Patroni changes its rule, these tables fail before a failover does."""

from types import SimpleNamespace

import pytest

from firebreak.control.detector import Verdict
from firebreak.control.failover import ClusterState, DeleteLeader, Member, Sync, decide
from firebreak.errors import BadValue

SITES = ["pangyo", "ansan", "siheung", "daejeon"]
SITE_OF = {s: s for s in SITES}


def patroni_elects(candidate: str, voters: tuple[str, ...], quorum: int, former: str, alive: set[str],
                   wal: dict[str, int] | None = None) -> bool:
    """Whether the installed Patroni lets `candidate` win its leader race: every member not in
    `alive` is unreachable; `wal` gives members' WAL positions (default all equal)."""
    import patroni.postgresql  # noqa: F401 - first, as Patroni's daemon does: ha alone is a circular import
    from patroni import global_config
    from patroni.dcs import Cluster, ClusterConfig, Member as PMember, Status, SyncState
    from patroni.ha import Ha, _MemberStatus

    wal = wal or {}
    sync = SyncState(1, former, ",".join(voters), quorum)
    names = [former, *voters, *([candidate] if candidate not in voters else [])]
    members = [PMember(1, n, None, {"api_url": f"http://{n}:8008/patroni", "conn_url": f"postgres://{n}:5432/postgres"})
               for n in names]
    config = ClusterConfig(1, {"synchronous_mode": "quorum", "synchronous_node_count": 1,
                               "maximum_lag_on_failover": 1048576}, 1)
    cluster = Cluster(None, config, None, Status(0, None, []), members, None, sync, None, None, {})
    global_config.update(cluster)
    ha = Ha.__new__(Ha)
    ha.cluster = cluster
    ha._last_timeline = None
    ha.patroni = SimpleNamespace(failover_priority=1)
    ha.state_handler = SimpleNamespace(name=candidate, supports_multiple_sync=True,
                                       replica_cached_timeline=lambda _t: 1,
                                       last_operation=lambda: wal.get(candidate, 100))
    ha.is_standby_cluster = lambda: False
    ha.check_timeline = lambda: False
    ha.fetch_nodes_statuses = lambda ms: [
        _MemberStatus(m, True, True, wal.get(m.name, 100), {}) if m.name in alive else _MemberStatus.unknown(m)
        for m in ms]
    # As the race passes them (ha.py is_lagging... is_healthiest_node): /sync's members.
    in_race = [m for m in members if sync.matches(m.name, True)]
    try:
        return ha._is_healthiest_node(in_race)
    finally:
        global_config.update(None, {})


def member(name, state="running"):
    return Member(name, "replica", state, f"http://{name}:8008/patroni", 1, 0,
                  f'{{"role":"replica","state":"{state}"}}', replication_state="streaming")


def quorum_cluster(voters, quorum, leader="pangyo", down_members=()):
    names = [leader, *voters]
    return ClusterState(leader=leader, leader_revision=5, sync_leader=leader, sync_standbys=tuple(voters),
                        members={n: member(n) for n in names if n not in down_members}, leader_lease=9,
                        quorum_commit=True, sync_quorum=quorum)


def dead(*sites):
    return {s: Verdict(s, s in sites, ("x", "y") if s in sites else (), (), 2, "no answer") for s in SITES}


# voters, quorum (as Patroni writes it for synchronous_node_count 1: voters - 1), sites dead
# besides the primary's.
TABLE = [
    (("ansan", "siheung"), 1, ()),                      # the lab: primary lost, both voters live
    (("ansan", "siheung"), 1, ("ansan",)),              # primary and a voter lost: a commit may be on ansan only
    (("ansan", "siheung"), 1, ("siheung",)),
    (("ansan",), 0, ()),                                # one voter left after an earlier loss
    (("ansan", "siheung", "daejeon"), 2, ()),
    (("ansan", "siheung", "daejeon"), 2, ("daejeon",)),
    (("ansan", "siheung", "daejeon"), 1, ("daejeon",)),  # numsync 2 of 3 voters: quorum 1
    (("ansan", "siheung", "daejeon"), 1, ("daejeon", "siheung")),
]


@pytest.mark.parametrize("voters,quorum,also_dead", TABLE)
def test_the_agent_releases_the_key_exactly_when_patronis_race_can_end(voters, quorum, also_dead):
    lost = {"pangyo", *also_dead}
    alive = {v for v in voters if v not in lost}
    patroni_can = any(patroni_elects(c, voters, quorum, "pangyo", alive) for c in alive)
    d = decide(quorum_cluster(voters, quorum), dead(*lost), SITE_OF)
    released = any(isinstance(a, DeleteLeader) for a in d.actions)
    assert released == patroni_can, d.reason
    assert d.refused == (not patroni_can)


def test_a_winner_of_patronis_race_holds_the_latest_commit():
    """The reason the rule is safe: with one voter ahead (it alone acknowledged the last commit),
    the other voter defers to it and only the one ahead can win."""
    voters, alive = ("ansan", "siheung"), {"ansan", "siheung"}
    wal = {"ansan": 200, "siheung": 100}
    assert patroni_elects("ansan", voters, 1, "pangyo", alive, wal)
    assert not patroni_elects("siheung", voters, 1, "pangyo", alive, wal)


def test_a_voter_whose_postgresql_answers_nothing_is_no_vote():
    c = quorum_cluster(("ansan", "siheung"), 1)
    stalled = {"siheung": Verdict("siheung", True, ("x", "y"), (), 2, "PostgreSQL answers nothing")}
    d = decide(c, dead("pangyo"), SITE_OF, stalled=stalled)
    assert d.refused and not d.actions and "answers nothing" in d.reason


def test_a_voter_without_a_member_key_is_no_vote():
    d = decide(quorum_cluster(("ansan", "siheung"), 1, down_members=("siheung",)), dead("pangyo"), SITE_OF)
    assert d.refused and "no member key" in d.reason


def test_a_cut_off_voter_is_not_dropped_under_quorum_commit():
    """ANY 1 (ansan, siheung): a commit that siheung cannot acknowledge, ansan does."""
    c = quorum_cluster(("ansan", "siheung"), 1)
    d = decide(c, dead(), SITE_OF, cut={frozenset(("pangyo", "siheung"))})
    assert d.actions == () and not d.refused


def test_plain_synchronous_mode_is_unchanged():
    c = quorum_cluster(("ansan",), 0)
    plain = ClusterState(**{**c.__dict__, "quorum_commit": False})
    d = decide(plain, dead("pangyo"), SITE_OF)
    assert d.failover and "synchronous standby ansan takes over" in d.reason


@pytest.mark.parametrize("raw,want", [
    ('{"leader":"pangyo","sync_standby":"ansan,siheung","quorum":1}', Sync("pangyo", ("ansan", "siheung"), 1)),
    ('{"leader":"pangyo","sync_standby":"ansan","quorum":0}', Sync("pangyo", ("ansan",), 0)),
    ('{"leader":null,"sync_standby":null,"quorum":3}', Sync(None, (), 0)),  # no leader: no quorum (Patroni)
    ('{"leader":"pangyo","sync_standby":"ansan"}', Sync("pangyo", ("ansan",), 0)),
])
def test_sync_is_read_as_patroni_reads_it(raw, want):
    from patroni.dcs import SyncState
    got = Sync.from_value(raw)
    theirs = SyncState.from_node(1, raw)
    assert got == want
    assert (got.leader, list(got.standbys), got.quorum) == (theirs.leader, theirs.voters, theirs.quorum)


@pytest.mark.parametrize("raw", ['{"leader":"p","quorum":"1"}', '{"leader":"p","quorum":-1}',
                                 '{"leader":"p","quorum":true}'])
def test_a_quorum_patroni_did_not_write_is_a_bad_value(raw):
    with pytest.raises(BadValue, match="quorum"):
        Sync.from_value(raw)


def test_patroni_writes_the_sync_key_with_the_quorum_the_agent_reads():
    import json

    from patroni.dcs import AbstractDCS
    doc = json.loads(json.dumps(AbstractDCS.sync_state("pangyo", ["ansan", "siheung"], 1)))
    assert Sync.from_value(json.dumps(doc)) == Sync("pangyo", ("ansan", "siheung"), 1)
