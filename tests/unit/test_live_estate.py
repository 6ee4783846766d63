"""`check --live`: the running estate as a topology, and its drift from the declared one. Pure."""

from __future__ import annotations

import copy

from firebreak.readiness import analyse_all
from firebreak.readiness.live import drift, live_topology, rebalance_plan
from firebreak.resources import example
from firebreak.topology import Kind, load_topology

SITES = ["pangyo", "ansan", "siheung"]
DECLARED = load_topology(example("estate.yaml"))


def running_as_declared() -> dict:
    """What a console's /api/estate says of examples/estate.yaml running as declared."""
    clusters = {}
    for name, svc in DECLARED.services.items():
        if svc.kind != Kind.DATABASE:
            continue
        members = {s: {"site": s, "role": "primary" if s == svc.primary else "replica",
                       "state": "running" if s == svc.primary else "streaming"} for s in svc.sites()}
        clusters[name] = {"primary_site": svc.primary, "synchronous": True, "doors": True, "members": members}
    services = {name: {"instances": {s: True for s in svc.sites()},
                       "databases": [d for d in svc.depends_on if DECLARED.services[d].kind == Kind.DATABASE],
                       "calls": [d for d in svc.depends_on if DECLARED.services[d].kind == Kind.SERVICE]}
                for name, svc in DECLARED.services.items() if svc.kind == Kind.SERVICE}
    return {"site": "ansan", "sites": SITES, "frozen": False, "etcd": {s: True for s in SITES},
            "agents": {s: True for s in SITES}, "clusters": clusters, "services": services}


def test_an_estate_running_as_declared_has_no_drift_and_the_same_verdict():
    live = live_topology(running_as_declared(), DECLARED)
    assert drift(DECLARED, live) == []
    assert analyse_all(live).failing == analyse_all(DECLARED).failing is False


def test_a_replica_that_is_not_there_and_a_primary_elsewhere_are_drift():
    doc = running_as_declared()
    del doc["clusters"]["payments-db"]["members"]["siheung"]
    doc["clusters"]["users-db"]["primary_site"] = "ansan"
    doc["clusters"]["users-db"]["members"]["ansan"]["state"] = "running"
    found = drift(DECLARED, live_topology(doc, DECLARED))
    assert {"service": "payments-db", "field": "replicas.siheung", "declared": 1, "running": 0} in found
    assert {"service": "users-db", "field": "primary", "declared": "pangyo", "running": "ansan"} in found
    assert len(found) == 2


def test_a_tool_in_one_site_only_is_drift_and_check_finds_what_it_costs():
    doc = running_as_declared()
    doc["agents"] = {"pangyo": True, "ansan": False, "siheung": False}
    live = live_topology(doc, DECLARED)
    fields = {(d["service"], d["field"]) for d in drift(DECLARED, live)}
    assert {("site-agent", "replicas.ansan"), ("ops-console", "replicas.siheung")} <= fields
    report = analyse_all(live)
    loss_of_pangyo = next(s for s in report.scenarios if s.lost == ("pangyo",))
    assert loss_of_pangyo.states["ops-console"] == "down"


def test_a_service_running_nowhere_is_down_everywhere_and_an_undeclared_one_is_drift():
    doc = running_as_declared()
    doc["services"]["claims"]["instances"] = {s: False for s in SITES}
    doc["services"]["search"] = {"instances": {"pangyo": True}, "databases": [], "calls": []}
    live = live_topology(doc, DECLARED)
    assert all(s.states["claims"] == "down" for s in analyse_all(live).scenarios)
    found = drift(DECLARED, live)
    assert {"service": "search", "field": "service", "declared": "not declared", "running": "running"} in found
    assert sum(1 for d in found if d["service"] == "claims") == 3


def test_without_a_declared_file_the_names_are_the_agents_own():
    live = live_topology(copy.deepcopy(running_as_declared()))
    assert {"etcd", "site-agent", "ops-console", "users-db", "login"} <= set(live.services)
    assert live.services["site-agent"].needs == 2


def test_rebalancing_moves_back_each_primary_whose_declared_site_runs_a_member_again():
    doc = running_as_declared()
    assert rebalance_plan(DECLARED, live_topology(doc, DECLARED)) == []  # as declared: nothing to do

    def move(cluster: str, to: str) -> None:
        c = doc["clusters"][cluster]
        c["members"][c["primary_site"]]["state"] = "streaming"
        c["primary_site"] = to
        c["members"][to]["state"] = "running"
    move("users-db", "ansan")                  # pangyo is back: ready
    move("messaging-db", "siheung")
    doc["clusters"]["messaging-db"]["members"]["pangyo"]["state"] = "stopped"   # pangyo's member not yet
    doc["clusters"]["payments-db"]["primary_site"] = None                        # no primary at all
    plan = {m["cluster"]: m for m in rebalance_plan(DECLARED, live_topology(doc, DECLARED))}
    users_home = DECLARED.services["users-db"].primary
    assert plan["users-db"] == {"cluster": "users-db", "from": "ansan", "to": users_home, "ready": True, "why": ""}
    assert not plan["messaging-db"]["ready"] and "no member of it runs in pangyo" in plan["messaging-db"]["why"]
    assert not plan["payments-db"]["ready"] and "no primary" in plan["payments-db"]["why"]
    assert "claims-db" not in plan


def test_quorum_commit_is_read_from_the_agents_and_compared_with_the_declaration():
    import dataclasses

    from firebreak.topology.model import Replication
    doc = running_as_declared()
    name = next(iter(doc["clusters"]))
    doc["clusters"][name]["replication"] = "quorum"
    live = live_topology(doc, DECLARED)
    assert live.services[name].replication == Replication.QUORUM
    assert any(name in str(d) and "replication" in str(d) for d in drift(DECLARED, live))
    declared = dataclasses.replace(DECLARED, services={**DECLARED.services, name: dataclasses.replace(
        DECLARED.services[name], replication=Replication.QUORUM)})
    assert drift(declared, live) == []
    # an agent from before quorum commit reports only `synchronous`
    del doc["clusters"][name]["replication"]
    assert live_topology(doc, DECLARED).services[name].replication == Replication.SYNC
