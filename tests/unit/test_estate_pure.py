"""The estate's pure parts: the topology-to-lab plan, finding and placing clusters, per-cluster
placement, doors and grants for many clusters, and the health of every cluster."""

from __future__ import annotations

import json

import pytest

from firebreak.control import clusters
from firebreak.control.dbdoor import ClusterDoor, commands, haproxy_config, Routes
from firebreak.control.door import door_config
from firebreak.control.etcd import KV
from firebreak.control.failover import ClusterState, Member
from firebreak.control.keys import Keys, PatroniKeys, role_grants
from firebreak.control.placement import coordination_move, etcd_leader_target
from firebreak.errors import InputError
from firebreak.lab.plan import PORT_STRIDE, default_plan, plan_lab
from firebreak.lab.status import healthy_clusters
from firebreak.resources import example
from firebreak.topology import load_topology, topology_from_dict

SITES = ["pangyo", "ansan", "siheung"]
ALL = {s: 1 for s in SITES}


def _topo(**services):
    return topology_from_dict({"name": "t", "sites": SITES, "services": services}, "t.yaml")


def _db(primary="pangyo", **kw):
    return {"kind": "database", "primary": primary, "replicas": dict(ALL), "replication": "sync",
            "failover": "auto", "doors": True, **kw}


# -- the plan ---------------------------------------------------------------------------------

def test_the_estate_example_is_four_clusters_five_services_and_survives_every_site():
    topo = load_topology(example("estate.yaml"))
    plan = plan_lab(topo)
    assert [c.name for c in plan.clusters] == ["users-db", "messaging-db", "payments-db", "claims-db"]
    assert len(plan.services) >= 5 and plan.quorum == "etcd" and "ops-console" in plan.tools
    primaries = [c.primary for c in plan.clusters]
    assert max(primaries.count(s) for s in SITES) == 2  # one site holds two primaries
    from firebreak.readiness import analyse_all
    assert not analyse_all(topo).failing  # every single site's loss is survivable


def test_each_cluster_gets_its_own_ports_and_directory_and_bootstraps_where_the_topology_says():
    plan = plan_lab(_topo(a=_db("ansan"), b=_db("siheung"), svc={"replicas": ALL, "depends_on": ["a", "b"]}))
    a, b = plan.clusters
    assert (a.primary, a.sites[0], b.primary) == ("ansan", "ansan", "siheung")
    assert b.port("postgres") - a.port("postgres") == PORT_STRIDE
    assert len({c.port(p) for c in plan.clusters for p in ("postgres", "patroni", "db_door", "db_door_ro")}) == 8
    assert (a.scope, a.component, a.dbname) == ("a", "patroni@a", "estate")
    svc = plan.service("svc")
    assert svc.databases == ("a", "b") and svc.component == "svc@svc"
    assert plan.components("pangyo", agents=True) == ["etcd", "patroni@a", "patroni@b", "dbdoor", "svc@svc",
                                                       "door", "agent"]


def test_a_cluster_only_in_some_sites_runs_only_there():
    plan = plan_lab(_topo(a=_db(), b=_db("ansan", replicas={"ansan": 1, "siheung": 1})))
    assert plan.components("pangyo", agents=False) == ["etcd", "patroni@a", "dbdoor", "door"]
    assert plan.cluster("b").sites == ("ansan", "siheung")


def test_without_a_topology_the_lab_is_todays():
    plan = default_plan(load_topology(example("firebreak-lab.yaml")))
    (c,) = plan.clusters
    assert (c.scope, c.component, c.dbname, c.port("postgres")) == ("firebreak", "patroni", "claims", 15432)
    assert not plan.estate and plan.components("ansan") == ["etcd", "patroni", "dbdoor", "app", "door", "agent"]


@pytest.mark.parametrize("services,field,words", [
    ({"a": _db(replicas={"pangyo": 2, "ansan": 1})}, "services.a.replicas.pangyo", "one PostgreSQL member per site"),
    ({"a": _db(failover="manual")}, "services.a.failover", "failover: auto"),
    ({"a": _db(replicas={"pangyo": 1}, replication="sync")}, "services.a.replication", "at least two sites"),
    ({"a": _db(replicas={"pangyo": 1, "ansan": 1}, replication="quorum")}, "services.a.replication",
     "standbys in at least two sites"),
    ({"a": _db(), "q": {"kind": "quorum", "replicas": {"pangyo": 1}}}, "services.q.replicas", "one member in every site"),
    ({"a": _db(), "t": {"kind": "ops-tool", "replicas": {"pangyo": 1}}}, "services.t.replicas", "in every site"),
    ({"a": _db(), "s": {"replicas": {"pangyo": 2}}}, "services.s.replicas.pangyo", "one instance per site"),
    ({"a": _db(), "s": {"replicas": {"pangyo": 1}, "needs": 2}}, "services.s.needs", "needs 2"),
    ({"s": {"replicas": ALL}}, "services", "no database"),
    ({"a": _db(), "b": _db(depends_on=["a"])}, "services.b.depends_on", "depends only on etcd"),
])
def test_what_the_lab_cannot_build_is_refused_naming_the_field(services, field, words):
    with pytest.raises(InputError) as e:
        plan_lab(_topo(**services))
    text = str(e.value)
    assert f"t.yaml: {field}: " in text and words in text


def test_every_problem_is_reported_at_once():
    with pytest.raises(InputError) as e:
        plan_lab(_topo(a=_db(failover="manual"), s={"replicas": {"pangyo": 3}}))
    assert "services.a.failover" in str(e.value) and "services.s.replicas.pangyo" in str(e.value)


# -- finding and placing clusters -------------------------------------------------------------

def _kv(key, value, rev=1, lease=0):
    return key, KV(key, value if isinstance(value, str) else json.dumps(value), rev, rev, lease)


def _estate_kvs():
    kvs = dict([
        _kv("/service/users/leader", "pangyo", 7), _kv("/service/users/config", {"ttl": 20, "loop_wait": 1}),
        _kv("/service/users/sync", {"leader": "pangyo", "sync_standby": "ansan"}),
        _kv("/service/users/members/pangyo", {"role": "primary", "state": "running",
                                             "api_url": "http://10.0.0.11:18008/patroni"}, 5, 42),
        _kv("/service/users/members/ansan", {"role": "replica", "state": "streaming",
                                            "api_url": "http://10.0.0.12:18008/patroni"}),
        _kv("/service/pay/leader", "pay-2", 9),
        _kv("/service/pay/members/pay-2", {"role": "primary", "state": "running",
                                          "conn_url": "postgres://10.0.0.12:15532/postgres",
                                          "api_url": "http://10.0.0.12:18108/patroni"}),
        _kv("/service/notes.txt", "not a cluster"),
    ])
    return kvs


def test_every_cluster_under_a_namespace_is_found_and_read():
    found = clusters.clusters_under(_estate_kvs(), "/service/")
    assert list(found) == ["users", "pay"]
    pk, users = found["users"]
    assert pk.leader == "/service/users/leader"
    assert (users.leader, users.leader_revision, users.sync_standbys, users.name) == ("pangyo", 7, ("ansan",), "users")
    assert users.members["pangyo"].lease == 42 and users.members["ansan"].state == "streaming"
    assert found["pay"][1].leader == "pay-2" and found["pay"][1].sync_standbys == ()
    assert (users.ttl, found["pay"][1].ttl) == (20, None)  # read for waking the primary (agent._wake_primary)


def test_members_are_placed_by_name_then_by_address_and_kept_once_fenced():
    hosts = clusters.unique_hosts({"pangyo": ["https://10.0.0.11:12379"], "ansan": ["http://10.0.0.12:18008"],
                                   "siheung": ["http://10.0.0.13:18008"]})
    pay = clusters.clusters_under(_estate_kvs(), "/service/")["pay"][1]
    placed = clusters.place_members(pay, {"pangyo": "pangyo", "ansan": "ansan"}, hosts)
    assert placed == {"pay-2": "ansan"}
    fenced = ClusterState(pay.leader, 9, None, (), {"pay-2": Member("pay-2", "primary", "running",
                                                                    "http://127.0.0.1:1/patroni", 9, 0, "{}")})
    assert clusters.place_members(fenced, {}, hosts) == {}                     # the address no longer says
    assert clusters.place_members(fenced, {}, hosts, placed) == {"pay-2": "ansan"}  # but it was learnt
    assert clusters.unique_hosts({"a": ["http://127.0.0.1:1"], "b": ["http://127.0.0.1:2"]}) == {}


# -- placement with many clusters -------------------------------------------------------------

@pytest.mark.parametrize("me,holder,primaries,syncs,move", [
    ("siheung", None, ["pangyo", "siheung"], ["ansan"], "stay"),                        # ansan (no primary) is better
    ("ansan", "ansan", ["pangyo", "pangyo", "ansan"], ["siheung"], "resign"),           # siheung holds no primary
    ("siheung", None, ["pangyo", "pangyo", "ansan", "siheung"], ["ansan"], "campaign"),  # fewest primaries, then syncs
    ("pangyo", None, ["pangyo", "pangyo", "ansan", "siheung"], [], "stay"),             # two primaries: worst placed
])
def test_the_coordinator_goes_where_the_fewest_primaries_are(me, holder, primaries, syncs, move):
    assert coordination_move(me, holder, primaries, [s for s in SITES if s != me], syncs) == move


def test_etcd_leadership_leaves_the_site_with_most_primaries():
    assert etcd_leader_target("pangyo", ["pangyo", "pangyo", "ansan", "siheung"], ["ansan", "ansan"], SITES) == "siheung"
    assert etcd_leader_target("siheung", ["pangyo", "pangyo", "ansan", "siheung"], ["ansan"], SITES) is None
    assert etcd_leader_target("pangyo", [], [], SITES) is None


# -- doors, grants, health --------------------------------------------------------------------

def test_a_door_of_many_clusters_has_a_frontend_pair_each_and_steers_each_by_name():
    cfg = haproxy_config(name="d", bind_host="10.0.0.11", admin_socket="/run/d.sock", clusters=[
        ClusterDoor("users", 15433, 15434, {"pangyo": ("10.0.0.11", 15432, 18008)}),
        ClusterDoor("pay", 15533, None, {"pangyo": ("10.0.0.11", 15532, 18108)})])
    assert "listen rw_users\n    bind 10.0.0.11:15433" in cfg and "listen ro_users" in cfg
    assert "listen rw_pay\n    bind 10.0.0.11:15533" in cfg and "ro_pay" not in cfg
    assert "server pangyo 10.0.0.11:15532 check port 18108" in cfg
    cmds = commands(["pangyo", "ansan"], Routes("ansan", ("pangyo",)), "pay")
    assert "set server rw_pay/ansan state ready" in cmds and "shutdown sessions server rw_pay/pangyo" in cmds
    assert not any("pg_rw" in c or "users" in c for c in cmds)


def test_the_front_door_serves_each_service_under_its_path_own_site_first():
    cfg = door_config("ansan", ["ansan", "pangyo"], {}, "10.0.0.12:18000", "unix//run/a.sock",
                      services={"login": {"pangyo": "http://10.0.0.11:18070", "ansan": "http://10.0.0.12:18070"},
                                "notes": {"siheung": "http://10.0.0.13:18370"}})
    routes = cfg["apps"]["http"]["servers"]["door"]["routes"]
    login = next(r for r in routes if r.get("match") == [{"path": ["/s/login/*"]}])
    assert login["handle"][0] == {"handler": "rewrite", "strip_path_prefix": "/s/login"}
    assert [u["dial"] for u in login["handle"][1]["upstreams"]] == ["10.0.0.12:18070", "10.0.0.11:18070"]
    notes = next(r for r in routes if r.get("match") == [{"path": ["/s/notes/*"]}])
    assert [u["dial"] for u in notes["handle"][1]["upstreams"]] == ["10.0.0.13:18370"]  # runs elsewhere only
    assert routes[-1]["match"] == [{"path": ["/healthz"]}]  # no reference app: the door answers it


def test_grants_for_many_clusters_cover_each_and_nothing_more():
    g = role_grants(Keys(), (PatroniKeys("/service/users"), PatroniKeys("/service/pay")), ("/service/",))
    assert {x.key for x in g["patroni"]} == {"/service/users/", "/service/pay/"}
    writes = {(x.key, x.prefix) for x in g["agent"] if "WRITE" in x.perm and x.key.startswith("/service/")}
    assert writes == {("/service/users/leader", False), ("/service/users/members/", True),
                      ("/service/users/history", False),
                      ("/service/pay/leader", False), ("/service/pay/members/", True), ("/service/pay/history", False)}
    assert any(x.key == "/service/" and x.perm == "READ" and x.prefix for x in g["agent"])


def _c(primary, sync, roles, states):
    return {"primary": primary, "sync_standby": sync, "members": roles, "states": states}


@pytest.mark.parametrize("clusters_,sync,ok", [
    ({"a": _c("x", "y", {"x": "primary", "y": "sync_standby"}, {"x": "running", "y": "streaming"}),
      "b": _c("y", "x", {"y": "primary", "x": "sync_standby"}, {"y": "running", "x": "streaming"})}, {}, True),
    ({"a": _c("x", "y", {"x": "primary", "y": "sync_standby"}, {"x": "running", "y": "streaming"}),
      "b": _c("y", None, {"y": "primary", "x": "replica"}, {"y": "running", "x": "streaming"})}, {}, False),
    ({"b": _c("y", None, {"y": "primary", "x": "replica"}, {"y": "running", "x": "streaming"})}, {"b": False}, True),
    ({"a": _c("x", "y", {"x": "primary", "y": "sync_standby", "z": "down"}, {"x": "running", "y": "streaming"})},
     {}, False),
])
def test_the_lab_is_healthy_only_when_every_cluster_is(clusters_, sync, ok):
    assert healthy_clusters(clusters_, sync) is ok


def test_a_database_declaring_quorum_commit_runs_patronis_quorum_mode():
    from firebreak.lab.plan import default_cluster
    plan = plan_lab(_topo(a=_db(replication="quorum"), b=_db(), c=_db(replication="async")))
    modes = {c.name: (c.sync, c.quorum_commit, c.synchronous_mode) for c in plan.clusters}
    assert modes == {"a": (True, True, "quorum"), "b": (True, False, True), "c": (False, False, False)}
    assert default_cluster(SITES).synchronous_mode is True
    assert default_cluster(SITES, replication="quorum").synchronous_mode == "quorum"
