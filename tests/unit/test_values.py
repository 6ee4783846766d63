"""Values read from etcd are parsed into their types at the edge: a value that does not parse is
refused with the field named (BadValue), never passed on to a decision, and never a crash."""

import asyncio
import json
import logging
import math

import pytest

from firebreak.control import ops
from firebreak.control.clusters import cluster_state
from firebreak.control.cycles import Cycles
from firebreak.control.detector import View
from firebreak.control.failover import Ignored, Member, Sync
from firebreak.control.keys import PatroniKeys
from firebreak.control.etcd import KV
from firebreak.errors import BadValue


def view_json(**over):
    d = {"observer": "ansan", "published": 100.5, "unreachable_for": {"pangyo": 1.2, "siheung": 0.0}}
    d.update(over)
    return json.dumps(d)


def test_a_view_parses_and_ignores_fields_it_does_not_know():
    v = View.from_value("ansan", view_json(probe_version=2, postgres_unreachable_for={"pangyo": 3}))
    assert v == View("ansan", 100.5, {"pangyo": 1.2, "siheung": 0.0})


BAD_VIEWS = [
    ("not json", "{", "not JSON"),
    ("a list", "[1, 2]", "JSON object"),
    ("under another site's key", view_json(observer="pangyo"), "observer is 'pangyo'"),
    ("no observer", json.dumps({"published": 1, "unreachable_for": {}}), "observer is None"),
    ("a string where seconds go (the measured crash)", view_json(unreachable_for={"pangyo": "3.0"}),
     "unreachable_for.pangyo"),
    ("a boolean is not seconds", view_json(unreachable_for={"pangyo": True}), "unreachable_for.pangyo"),
    ("negative seconds", view_json(unreachable_for={"pangyo": -1}), "below 0"),
    ("NaN published", view_json(published=math.nan), "published"),
    ("infinite seconds", view_json(unreachable_for={"pangyo": 1e999}), "unreachable_for.pangyo"),
    ("published missing", json.dumps({"observer": "ansan", "unreachable_for": {}}), "published"),
    ("unreachable_for a list", view_json(unreachable_for=["pangyo"]), "unreachable_for must be"),
]


@pytest.mark.parametrize("name,raw,why", BAD_VIEWS, ids=[c[0] for c in BAD_VIEWS])
def test_a_bad_view_is_refused_naming_the_field(name, raw, why):
    with pytest.raises(BadValue) as e:
        View.from_value("ansan", raw)
    assert why in str(e.value) and "view ansan" in str(e.value)


def member_json(**over):
    d = {"conn_url": "postgres://10.77.0.12:15432/postgres", "api_url": "http://10.77.0.12:18008/patroni",
         "state": "streaming", "role": "replica", "version": "4.1.5"}
    d.update(over)
    return json.dumps(d)


def test_a_member_parses_with_patronis_fields():
    m = Member.from_value("ansan", member_json(), 40, 7)
    assert (m.role, m.state, m.api_url, m.revision, m.lease) == ("replica", "streaming",
                                                                  "http://10.77.0.12:18008/patroni", 40, 7)


@pytest.mark.parametrize("raw,why", [("{", "not JSON"), ("7", "JSON object"), (member_json(state=1), "state"),
                                     (member_json(api_url=None), "api_url")])
def test_a_bad_member_is_refused(raw, why):
    with pytest.raises(BadValue, match=why):
        Member.from_value("ansan", raw, 1, 0)


@pytest.mark.parametrize("raw,expected", [
    ('{"leader": "pangyo", "sync_standby": "ansan", "quorum": 0}', Sync("pangyo", ("ansan",))),
    ('{"leader": "pangyo", "sync_standby": "ansan,siheung"}', Sync("pangyo", ("ansan", "siheung"))),
    ('{"leader": "pangyo", "sync_standby": null}', Sync("pangyo", ())),
    ('{}', Sync(None, ())),
])
def test_sync_parses_as_patroni_writes_it(raw, expected):
    assert Sync.from_value(raw) == expected


@pytest.mark.parametrize("raw", ['{"leader": 3}', '{"leader": "p", "sync_standby": ["ansan"]}', "[]", "x"])
def test_a_bad_sync_is_refused(raw):
    with pytest.raises(BadValue, match="/sync"):
        Sync.from_value(raw)


def kv(key, value, rev=10, lease=0):
    return KV(key, value, rev, rev, lease)


def test_a_cluster_leaves_out_what_does_not_parse_and_says_so():
    pk = PatroniKeys("/service/firebreak")
    kvs = {k.key: k for k in (
        kv(pk.leader, "pangyo", 5, 9), kv(pk.sync, '{"leader": "pangyo", "sync_standby": ["ansan"]}', 6),
        kv(pk.member("pangyo"), member_json(role="primary", state="running"), 7),
        kv(pk.member("ansan"), member_json(state={"x": 1}), 8))}
    c = cluster_state(kvs, pk, "firebreak")
    assert c.leader == "pangyo" and set(c.members) == {"pangyo"}
    # A /sync that does not parse names no standby: the failover then promotes nothing.
    assert c.sync_standbys == () and c.sync_leader is None
    assert [(i.key, i.revision) for i in c.ignored] == [(pk.sync, 6), (pk.member("ansan"), 8)]


def test_a_release_record_parses_and_keeps_what_an_app_is_told():
    raw = json.dumps({"version": "v2", "notes": "n", "created": 1.0, "rolled": ["pangyo"], "by": "kim"})
    assert ops.release_of(raw) == {"version": "v2", "notes": "n", "created": 1.0}
    assert ops.release_of(ops.release_record("v3"))["version"] == "v3"
    for bad in ("[]", '{"version": 3}', '{"version": ""}', '{"version": "v", "notes": 1}', "nope"):
        with pytest.raises(BadValue, match="release"):
            ops.release_of(bad)


def test_a_guarded_cycle_logs_counts_and_lets_the_loop_carry_on(caplog):
    counted = []
    cycles = Cycles(logging.getLogger("test.cycles"), counted.append)

    async def loop():
        done = 0
        for i in range(3):
            with cycles.guard("publish"):
                if i == 1:
                    raise TypeError("'str' and 'float'")
                done += 1
        return done

    with caplog.at_level(logging.ERROR, "test.cycles"):
        assert asyncio.run(loop()) == 2
    assert counted == ["publish"] and cycles.errors == {"publish": 1}
    assert "publish: a cycle failed" in caplog.text and "TypeError" in caplog.text


def test_a_guard_does_not_swallow_cancellation():
    cycles = Cycles(logging.getLogger("test.cycles"))
    with pytest.raises(asyncio.CancelledError):
        with cycles.guard("probe"):
            raise asyncio.CancelledError()
    assert cycles.errors == {}


def test_an_ignored_value_is_counted_each_read_and_logged_once_per_revision(caplog):
    kinds = []
    cycles = Cycles(logging.getLogger("test.cycles"), count_ignored=kinds.append)
    with caplog.at_level(logging.WARNING, "test.cycles"):
        for rev in (5, 5, 5, 6):
            cycles.ignore("view", Ignored("/firebreak/views/ansan", rev, "bad"))
    assert kinds == ["view"] * 4
    assert caplog.text.count("ignoring /firebreak/views/ansan") == 2


def test_probe_requests_and_what_counts_as_an_answer():
    from firebreak.control import probes
    p = probes.http_probe("http://10.77.0.11:18008", "patroni")
    assert (p.host, p.port, p.tls) == ("10.77.0.11", 18008, False)
    assert p.send.startswith(b"GET /liveness HTTP/1.0\r\n") and p.send.endswith(b"\r\n\r\n")
    assert p.answered(b"HTTP/1.1 503 Service") and p.answered(b"HTTP/1.0 400 Bad Request")
    assert not p.answered(b"") and not p.answered(b"\x15\x03\x01")
    assert probes.http_probe("https://door.example:443", "app").tls
    assert probes.http_probe("10.0.0.1:2381", "etcd").send.startswith(b"GET /firebreak-probe ")
    pg = probes.postgres_probe("postgres://10.77.0.12:15432/postgres")
    assert (pg.host, pg.port, pg.send) == ("10.77.0.12", 15432, b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    assert pg.answered(b"N") and pg.answered(b"S") and not pg.answered(b"E") and not pg.answered(b"")
    assert probes.postgres_probe("postgres:///postgres?host=/run/pg") is None
    with pytest.raises(ValueError, match="needs a host and a port"):
        probes.http_probe("http://no-port", "agent")


def test_a_patroni_4_replica_is_streaming_by_its_replication_state():
    m = Member.from_value("ansan", member_json(state="running", replication_state="streaming"), 1, 0)
    assert m.streaming and m.replication_state == "streaming"
    assert not Member.from_value("ansan", member_json(state="running"), 1, 0).streaming
    assert Member.from_value("ansan", member_json(state="streaming"), 1, 0).streaming  # older Patroni


def test_the_commit_path_is_each_primary_and_its_synchronous_standbys():
    from firebreak.control.clusters import commit_path
    from firebreak.control.failover import ClusterState
    found = {"a": ClusterState("p1", 1, "p1", ("s1", "s2"), {}), "b": ClusterState(None, 0, None, (), {})}
    assert commit_path(found) == {"a/p1": ("a", "p1"), "a/s1": ("a", "s1"), "a/s2": ("a", "s2")}
