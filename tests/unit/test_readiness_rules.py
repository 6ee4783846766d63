"""The readiness rules, one table row per rule: topology + lost sites in, states and findings out."""

import pytest

from firebreak.readiness import analyse, analyse_all
from firebreak.topology import topology_from_dict

SITES = ["a", "b", "c"]


def topo(**services):
    """The services over sites a, b, c, and d too where a service names it (quorum commit's rows:
    a voter lost with the primary's site leaves one standing only with four sites)."""
    named = {s for svc in services.values() for s in svc.get("replicas", {})}
    return topology_from_dict({"name": "t", "sites": SITES + sorted(named - set(SITES)), "services": services})


def kinds(result, service=None):
    return sorted({f.kind for f in result.findings if service is None or f.service == service})


def finding(result, kind, service):
    matches = [f for f in result.findings if f.kind == kind and f.service == service]
    assert matches, f"no {kind} finding for {service}: {result.findings}"
    return matches[0]


# (name, services, lost, expected states (subset), expected finding kinds per service (subset))
RULES = [
    ("instances survive: up",
     dict(web={"replicas": {"a": 2, "b": 2}, "needs": 2}), ["a"],
     {"web": "up"}, {"web": []}),
    ("below needs: degraded",
     dict(web={"replicas": {"a": 2, "b": 1}, "needs": 2}), ["a"],
     {"web": "degraded"}, {"web": ["degraded"]}),
    ("no instance survives: down",
     dict(web={"replicas": {"a": 3}}), ["a"],
     {"web": "down"}, {"web": ["down"]}),
    ("dependency down: down",
     dict(web={"replicas": {"b": 1}, "depends_on": ["auth"]}, auth={"replicas": {"a": 1}}), ["a"],
     {"web": "down", "auth": "down"}, {"web": ["down"], "auth": ["down"]}),
    ("dependency degraded: degraded",
     dict(web={"replicas": {"b": 1}, "depends_on": ["auth"]}, auth={"replicas": {"a": 1, "b": 1}, "needs": 2}), ["a"],
     {"web": "degraded", "auth": "degraded"}, {"web": ["degraded"]}),
    ("quorum keeps a strict majority: up",
     dict(zk={"kind": "quorum", "replicas": {"a": 1, "b": 1, "c": 1}}), ["a"],
     {"zk": "up"}, {"zk": []}),
    ("quorum without a strict majority: quorum-lost",
     dict(zk={"kind": "quorum", "replicas": {"a": 2, "b": 1, "c": 1}}), ["a"],
     {"zk": "down"}, {"zk": ["quorum-lost"]}),
    ("quorum of two split evenly: half is not a majority",
     dict(zk={"kind": "quorum", "replicas": {"a": 1, "b": 1}}), ["a"],
     {"zk": "down"}, {"zk": ["quorum-lost"]}),
    ("database, replica site lost: up, no loss",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "async"}), ["b"],
     {"db": "up"}, {"db": []}),
    ("database auto failover, sync: up, no loss",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync", "failover": "auto"}), ["a"],
     {"db": "up"}, {"db": []}),
    ("database auto failover, async: up but data-loss",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "async", "failover": "auto"}), ["a"],
     {"db": "up"}, {"db": ["data-loss"]}),
    ("database manual failover, tools up: up",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync",
              "failover": "manual", "recovery": ["console"]},
          console={"kind": "ops-tool", "replicas": {"b": 1}}), ["a"],
     {"db": "up"}, {"db": []}),
    ("database manual failover, tool lost: down and unrecoverable",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync",
              "failover": "manual", "recovery": ["console"]},
          console={"kind": "ops-tool", "replicas": {"a": 1}}), ["a"],
     {"db": "down"}, {"db": ["down", "unrecoverable"]}),
    ("database with every copy lost: down and data-loss even when sync",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 2}, "replication": "sync", "failover": "auto"}), ["a"],
     {"db": "down"}, {"db": ["data-loss", "down"]}),
    ("quorum commit, the primary's site lost, both voters alive: up, no loss",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1, "c": 1}, "replication": "quorum",
              "failover": "auto"}), ["a"],
     {"db": "up"}, {"db": []}),
    ("quorum commit, a voter's site lost, the primary's alive: up (ANY 1 of the others)",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1, "c": 1}, "replication": "quorum",
              "failover": "auto"}), ["b"],
     {"db": "up"}, {"db": []}),
    ("quorum commit, the primary's site and a voter's lost: down, no standby may be promoted",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1, "c": 1, "d": 1},
              "replication": "quorum", "failover": "auto"}), ["a", "b"],
     {"db": "down"}, {"db": ["down"]}),
    ("quorum commit, a second member in the primary's site is a voter lost with it: down",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 2, "b": 1, "c": 1}, "replication": "quorum",
              "failover": "auto"}), ["a"],
     {"db": "down"}, {"db": ["down"]}),
    ("one named synchronous standby: the primary's and another site lost, up (the model does not know which "
     "standby Patroni named)",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1, "c": 1, "d": 1},
              "replication": "sync", "failover": "auto"}), ["a", "b"],
     {"db": "up"}, {"db": []}),
    ("automatic failover, clients dial the hosts: the app's sessions are stranded on the dead primary",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync", "failover": "auto"},
          app={"replicas": {"a": 1, "b": 1}, "depends_on": ["db"]}), ["a"],
     {"db": "up", "app": "up"}, {"db": [], "app": ["stranded"]}),
    ("automatic failover through database doors: nothing stranded",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync", "failover": "auto",
              "doors": True},
          app={"replicas": {"a": 1, "b": 1}, "depends_on": ["db"]}), ["a"],
     {"db": "up", "app": "up"}, {"db": [], "app": []}),
    ("a replica's site lost: nothing stranded without doors either",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync", "failover": "auto"},
          app={"replicas": {"a": 1, "b": 1}, "depends_on": ["db"]}), ["b"],
     {"db": "up", "app": "up"}, {"app": []}),
    ("service down with its recovery tool down: unrecoverable",
     dict(web={"replicas": {"a": 1}, "recovery": ["deploy"]}, deploy={"kind": "ops-tool", "replicas": {"a": 1}}), ["a"],
     {"web": "down"}, {"web": ["down", "unrecoverable"]}),
    ("service up with its recovery tool down: unmanageable",
     dict(web={"replicas": {"a": 1, "b": 1}, "recovery": ["deploy"]}, deploy={"kind": "ops-tool", "replicas": {"a": 1}}), ["a"],
     {"web": "up"}, {"web": ["unmanageable"]}),
    ("recovery tool that depends on the database it recovers: deadlock, down",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync",
              "failover": "manual", "recovery": ["console"]},
          console={"kind": "ops-tool", "replicas": {"b": 1}, "depends_on": ["login"]},
          login={"replicas": {"b": 1}, "depends_on": ["db"]}), ["a"],
     {"db": "down", "console": "down", "login": "down"}, {"db": ["down", "unrecoverable"]}),
    ("same loop, primary's site survives: all up",
     dict(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync",
              "failover": "manual", "recovery": ["console"]},
          console={"kind": "ops-tool", "replicas": {"b": 1}, "depends_on": ["login"]},
          login={"replicas": {"b": 1}, "depends_on": ["db"]}), ["c"],
     {"db": "up", "console": "up", "login": "up"}, {"db": []}),
]


@pytest.mark.parametrize("name,services,lost,states,findings", RULES, ids=[r[0] for r in RULES])
def test_rule(name, services, lost, states, findings):
    result = analyse(topo(**services), lost)
    for svc, state in states.items():
        assert result.states[svc] == state, (svc, result.reasons.get(svc))
    for svc, expected in findings.items():
        assert kinds(result, svc) == sorted(expected), result.findings


def test_dependency_chain_explains_the_root_cause():
    t = topo(app={"replicas": {"b": 1}, "depends_on": ["api"]},
             api={"replicas": {"b": 1}, "depends_on": ["login"]},
             login={"replicas": {"a": 1}})
    f = finding(analyse(t, ["a"]), "down", "app")
    assert f.path == ("app", "api", "login")
    assert "depends on api" in f.reason


def test_unrecoverable_path_goes_through_the_tool():
    t = topo(app={"replicas": {"a": 1}, "recovery": ["deploy"]},
             deploy={"kind": "ops-tool", "replicas": {"b": 1}, "depends_on": ["login"]},
             login={"replicas": {"a": 1}})
    f = finding(analyse(t, ["a"]), "unrecoverable", "app")
    assert f.path == ("app", "deploy", "login")


def test_deadlock_path_shows_where_the_loop_closes():
    t = topo(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}, "replication": "sync",
                 "recovery": ["console"]},
             console={"kind": "ops-tool", "replicas": {"b": 1}, "depends_on": ["db"]})
    f = finding(analyse(t, ["a"]), "down", "db")
    assert f.path == ("db", "console", "db")
    assert "manual failover needs console" in f.reason


def test_analyse_all_covers_single_sites_then_pairs():
    t = topo(web={"replicas": {"a": 1, "b": 1, "c": 1}})
    assert [r.lost for r in analyse_all(t).scenarios] == [("a",), ("b",), ("c",)]
    assert [r.lost for r in analyse_all(t, pairs=True).scenarios][3:] == [("a", "b"), ("a", "c"), ("b", "c")]


def test_summary_and_verdict():
    t = topo(zk={"kind": "quorum", "replicas": {"a": 1, "b": 1, "c": 1}})
    single = analyse_all(t)
    assert single.summary["verdict"] == "pass" and not single.failing
    pairs = analyse_all(t, pairs=True)
    assert pairs.summary["verdict"] == "fail"
    assert pairs.summary["failing_scenarios"] == 3
    assert pairs.summary["findings"]["quorum-lost"] == 3
    assert pairs.worst_first()[0].failing


def test_degraded_and_unmanageable_do_not_fail():
    t = topo(web={"replicas": {"a": 1, "b": 1}, "needs": 2, "recovery": ["deploy"]},
             deploy={"kind": "ops-tool", "replicas": {"a": 1}})
    r = analyse(t, ["a"])
    assert kinds(r) == ["degraded", "down", "unmanageable"]  # deploy itself is down
    t2 = topo(web={"replicas": {"a": 1, "b": 1}, "needs": 2})
    assert not analyse(t2, ["a"]).failing


def test_examples_tell_the_story():
    from firebreak.topology import load_topology
    from tests.conftest import ROOT
    kakao = analyse_all(load_topology(ROOT / "examples/kakao-2022.yaml"))
    pangyo = next(r for r in kakao.scenarios if r.lost == ("pangyo",))
    assert pangyo.failing
    assert {"unrecoverable", "data-loss", "quorum-lost"} <= set(kinds(pangyo))
    assert pangyo.states["login"] == "down" and pangyo.states["messenger"] == "down"
    lab = analyse_all(load_topology(ROOT / "examples/firebreak-lab.yaml"))
    assert not lab.failing


def test_quorum_commit_names_the_lost_voter_and_the_rule():
    t = topo(db={"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1, "c": 1, "d": 1},
                 "replication": "quorum", "failover": "auto"})
    f = finding(analyse(t, ["a", "c"]), "down", "db")
    assert f.path == ("db",)
    assert "primary site a lost with a standby in c" in f.reason
    assert "ANY 1 of 3 standbys" in f.reason and "Patroni promotes no standby" in f.reason and "quorum rule" in f.reason


def test_quorum_commit_names_a_second_member_in_the_primary_s_own_site_as_the_lost_voter():
    t = topo(db={"kind": "database", "primary": "a", "replicas": {"a": 2, "b": 1, "c": 1},
                 "replication": "quorum", "failover": "auto"})
    f = finding(analyse(t, ["a"]), "down", "db")
    assert "with a standby in a (the primary's own second member)" in f.reason
