"""The lab builds the database doors its topology declares and nothing else (issue 27): a cluster
with `doors: true` gets a door pair in every site's HAProxy and in the agents' db-door keepers; a
site runs a `dbdoor` process only when some cluster declares doors; and the estate the agents then
report is the file, so `check --live --against` that file finds no drift. The default lab (no
topology) keeps its one cluster's doors. Tables: doors per cluster in, what runs and what each
file says out."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from firebreak.control.config import AgentConfig
from firebreak.deploy.inventory import load_inventory
from firebreak.deploy.render import render
from firebreak.deploy.secrets import make_secrets
from firebreak.errors import LabError
from firebreak.lab import config as lab
from firebreak.lab.components import door_port, start
from firebreak.lab.layout import PORTS, make_layout
from firebreak.lab.plan import default_plan, plan_lab
from firebreak.lab.state import LabState, SiteState
from firebreak.lab.status import client_dsns_of
from firebreak.readiness.live import drift, live_topology
from firebreak.resources import example
from firebreak.topology import load_topology, topology_from_dict
from tests.unit.test_deploy_inventory import CONTRACT

SITES = ["gwangju", "daejeon", "busan"]  # the inventory contract's, so render can build the same file
LAYOUT = make_layout(Path("/lab"), "loopback", SITES, "abcd1234")
SECRETS = lab.Secrets(superuser="su", replication="rep", app="app-pw", cluster_token="tok", patroni_api="api",
                      app_admin="admin", session="sess")
ALL = {s: 1 for s in SITES}
DBS = ("a", "b", "c", "d")


def topology_doc(doors: dict[str, bool | None], replicas: dict[str, dict[str, int]] | None = None) -> dict:
    """An estate like examples/estate.yaml: etcd, the agents' tools, a database per entry of `doors`
    (None: `doors` not written, so false) and a service on each."""
    services: dict = {
        "etcd": {"kind": "quorum", "replicas": dict(ALL)},
        "site-agent": {"kind": "ops-tool", "replicas": dict(ALL), "needs": 2, "depends_on": ["etcd"]},
        "ops-console": {"kind": "ops-tool", "replicas": dict(ALL), "depends_on": ["site-agent"]},
    }
    for i, (name, declared) in enumerate(doors.items()):
        reps = (replicas or {}).get(name, dict(ALL))
        services[name] = {"kind": "database", "primary": next(iter(reps)), "replicas": reps,
                          "replication": "sync", "failover": "auto", "depends_on": ["etcd"],
                          "recovery": ["ops-console"], **({"doors": declared} if declared is not None else {})}
        services[f"svc-{name}"] = {"replicas": dict(ALL), "depends_on": [name]}
    return {"name": "doors", "sites": SITES, "services": services}


def topology(doors, replicas=None):
    return topology_from_dict(topology_doc(doors, replicas), "doors.yaml")


def listens(haproxy: str) -> list[tuple[str, int]]:
    """HAProxy's `listen` sections as (name, bound port)."""
    return [(name, int(port)) for name, port in
            re.findall(r"^listen (\S+)\n    bind [^\n]*:(\d+)$", haproxy, re.M)]


def agent_doors(cfg: AgentConfig) -> set[str]:
    """The clusters an agent reports as behind doors: the scopes its db-door keeper steers
    (control/agent.py Agent.estate, `doors`)."""
    return set(cfg.db_door.ports(cfg.default_scope)) if cfg.db_door is not None else set()


# -- what runs, and what each door and agent serves --------------------------------------------

CASES = [
    # (case, doors declared per cluster, members per cluster when not everywhere,
    #  the clusters on the doors, sites running dbdoor)
    ("none declared (the issue's four clusters)", dict.fromkeys(DBS), {}, [], []),
    ("all false", dict.fromkeys(DBS, False), {}, [], []),
    ("all true", dict.fromkeys(DBS, True), {}, list(DBS), SITES),
    ("mixed", {"a": False, "b": True, "c": None, "d": True}, {}, ["b", "d"], SITES),
    ("one, not the first", {"a": False, "b": False, "c": True, "d": False}, {}, ["c"], SITES),
    # a door is where a site's clients are: gwangju's serves b though b has no member there
    ("doors on a cluster absent from a site", {"a": False, "b": True},
     {"b": {"daejeon": 1, "busan": 1}}, ["b"], SITES),
]


@pytest.mark.parametrize("case,doors,replicas,on_doors,door_sites", CASES, ids=[c[0] for c in CASES])
def test_a_site_runs_a_database_door_only_for_clusters_that_declare_doors(case, doors, replicas, on_doors,
                                                                          door_sites):
    plan = plan_lab(topology(doors, replicas))
    assert [c.name for c in plan.door_clusters] == on_doors
    assert [s for s in SITES if "dbdoor" in plan.components(s)] == door_sites
    assert [s for s in SITES if "dbdoor" in plan.components(s, agents=False)] == door_sites
    for site in SITES:  # the rest of what runs is unchanged: the door sits between Patroni and the services
        comps = plan.components(site)
        assert comps[0] == "etcd" and comps[-2:] == ["door", "agent"]
        if "dbdoor" in comps:
            assert comps.index("dbdoor") == 1 + sum(site in c.sites for c in plan.clusters)


@pytest.mark.parametrize("case,doors,replicas,on_doors,door_sites", CASES, ids=[c[0] for c in CASES])
def test_each_door_and_each_agent_serve_exactly_the_declared_clusters(case, doors, replicas, on_doors,
                                                                       door_sites):
    plan = plan_lab(topology(doors, replicas))
    for site in LAYOUT.sites:
        cfg = AgentConfig.model_validate(lab.agent_config(LAYOUT, site, SECRETS, plan))
        assert agent_doors(cfg) == set(on_doors)
        if not on_doors:
            assert cfg.db_door is None  # no keeper for a door that was never started
            with pytest.raises(LabError, match="doors: true"):
                lab.db_door_config_of(LAYOUT, site, plan)
            continue
        first = plan.cluster(on_doors[0])
        assert (cfg.db_door.port, cfg.db_door.read_only_port) == (first.port("db_door"), first.port("db_door_ro"))
        assert door_port(plan) == first.port("db_door")  # what `lab up` waits on
        haproxy = lab.db_door_config_of(LAYOUT, site, plan)
        if len(on_doors) == 1:  # one cluster: the plain backends, which the keeper names for one
            assert listens(haproxy) == [("pg_rw", first.port("db_door")), ("pg_ro", first.port("db_door_ro"))]
        else:
            assert listens(haproxy) == [(f"{kind}_{c}", plan.cluster(c).port(f"db_door{suffix}"))
                                        for c in on_doors for kind, suffix in (("rw", ""), ("ro", "_ro"))]
        assert {c: p.port for c, p in cfg.db_door.ports(cfg.default_scope).items()} == \
               {c: plan.cluster(c).port("db_door") for c in on_doors}


@pytest.mark.parametrize("case,doors,replicas,on_doors,door_sites", CASES, ids=[c[0] for c in CASES])
def test_status_gives_door_dsns_only_where_there_are_doors_and_every_cluster_a_client_dsn(
        case, doors, replicas, on_doors, door_sites):
    plan = plan_lab(topology(doors, replicas))
    through_doors, clients = client_dsns_of(LAYOUT, plan, "pw")
    assert list(through_doors) == on_doors
    assert list(clients) == list(doors)
    for c in plan.clusters:
        for site in LAYOUT.sites:
            dsn = clients[c.name][site.name]
            if c.doors:  # one host, the door's port for this cluster
                assert dsn == through_doors[c.name][site.name] and f"@{site.address}:{c.port('db_door')}/" in dsn
            else:        # the members' hosts, libpq finding the primary: as the services connect
                assert dsn == lab.cluster_dsn(LAYOUT, c, c.app_user, "pw") and "target_session_attrs=read-write" in dsn


def test_a_door_is_not_started_where_the_lab_runs_none():
    plan = plan_lab(topology(dict.fromkeys(DBS)))
    state = LabState(lab_id="abcd1234", net="loopback", topology="doors.yaml", site_names=SITES, home=Path("/lab"),
                     estate=True, sites={s: SiteState() for s in SITES})
    state._plan = plan
    with pytest.raises(LabError, match="gwangju runs no database door.*doors: true"):
        start(state, LAYOUT, LAYOUT.site("gwangju"), "dbdoor", SECRETS)


# -- no drift: the estate the agents report is the file ----------------------------------------

def estate_doc(cfg: AgentConfig, plan) -> dict:
    """What an agent's /api/estate says of a healthy lab built from `plan` (control/agent.py
    Agent.estate): every member where the plan puts it, each primary where the topology does, its
    doors as the agent's own configuration has them."""
    doors = agent_doors(cfg)
    return {
        "site": cfg.site, "sites": list(cfg.sites), "frozen": False,
        "etcd": dict.fromkeys(cfg.sites, True), "agents": dict.fromkeys(cfg.sites, True),
        "clusters": {c.scope: {"primary_site": c.primary, "synchronous": c.sync,
                               "replication": "quorum" if c.quorum_commit else "sync" if c.sync else "async",
                               "doors": c.scope in doors,
                               "members": {s: {"site": s, "role": "leader" if s == c.primary else "sync_standby",
                                               "state": "running" if s == c.primary else "streaming"}
                                           for s in c.sites}}
                     for c in plan.clusters},
        "services": {name: {"instances": dict.fromkeys(svc.sites, True), "databases": list(svc.databases),
                            "calls": list(svc.calls)}
                     for name, svc in cfg.services.items()},
    }


@pytest.mark.parametrize("case,doors,replicas,on_doors,door_sites", CASES, ids=[c[0] for c in CASES])
def test_check_live_against_the_file_the_lab_was_built_from_finds_no_drift(case, doors, replicas, on_doors,
                                                                           door_sites):
    declared = topology(doors, replicas)
    plan = plan_lab(declared)
    for site in LAYOUT.sites:
        cfg = AgentConfig.model_validate(lab.agent_config(LAYOUT, site, SECRETS, plan))
        assert drift(declared, live_topology(estate_doc(cfg, plan), declared)) == []


def test_doors_built_for_every_cluster_are_drift_on_each_that_declares_none():
    """The issue's shape, so the test above can see what it rules out: agents steering a door for
    every cluster report doors on each, and the file says false."""
    declared = topology({"a": None, "b": True})
    everywhere = plan_lab(topology({"a": True, "b": True}))
    cfg = AgentConfig.model_validate(lab.agent_config(LAYOUT, LAYOUT.sites[0], SECRETS, everywhere))
    assert drift(declared, live_topology(estate_doc(cfg, plan_lab(declared)), declared)) == [
        {"service": "a", "field": "doors", "declared": False, "running": True}]


# -- the default lab keeps its doors; the lab and a real host agree -----------------------------

def test_the_default_lab_keeps_its_one_clusters_database_doors():
    topo = load_topology(example("firebreak-lab.yaml"))
    layout = make_layout(Path("/lab"), "loopback", list(topo.sites), "abcd1234")
    plan = default_plan(topo)
    (cluster,) = plan.door_clusters
    assert cluster.legacy and all("dbdoor" in plan.components(s) for s in topo.sites)
    assert door_port(plan) == PORTS["db_door"]
    through_doors, _ = client_dsns_of(layout, plan, "pw")
    assert list(through_doors) == [cluster.name]
    for site in layout.sites:
        with_plan = lab.agent_config(layout, site, SECRETS, plan)
        # the same file as without a plan (what the parity test compares with a real host's)
        assert with_plan["db_door"] == lab.agent_config(layout, site, SECRETS)["db_door"] == {
            "admin": site.db_door_admin, "host": site.address, "port": PORTS["db_door"],
            "read_only_port": PORTS["db_door_ro"]}
        assert lab.db_door_config_of(layout, site, plan) == lab.db_door_config_of(layout, site)
        assert listens(lab.db_door_config_of(layout, site)) == [("pg_rw", PORTS["db_door"]),
                                                                 ("pg_ro", PORTS["db_door_ro"])]


@pytest.mark.parametrize("case,doors,replicas,on_doors,door_sites", CASES, ids=[c[0] for c in CASES])
def test_the_lab_and_deploy_render_put_the_same_clusters_on_the_doors(tmp_path, case, doors, replicas, on_doors,
                                                                       door_sites):
    (tmp_path / "doors.yaml").write_text(yaml.safe_dump(topology_doc(doors, replicas)))
    contract = textwrap.dedent(CONTRACT).lstrip("\n")
    if not on_doors:  # an inventory refuses a db-door host when no database declares doors
        contract = contract.replace(", db-door]", "]")
    (tmp_path / "inventory.yml").write_text("topology: doors.yaml\n" + contract)
    inv = load_inventory(tmp_path / "inventory.yml")
    files = render(inv, make_secrets(inv.names, token=lambda: "s" * 24))
    plan = plan_lab(load_topology(tmp_path / "doors.yaml"))
    assert [c.scope for c in inv.door_clusters] == [c.scope for c in plan.door_clusters] == on_doors
    for site, host in zip(LAYOUT.sites, ("gj-db1", "dj-db1", "bs-db1")):
        real = AgentConfig.model_validate(yaml.safe_load(files[f"{host}/etc/firebreak/agent.yml"].content))
        mine = AgentConfig.model_validate(lab.agent_config(LAYOUT, site, SECRETS, plan))
        assert agent_doors(real) == agent_doors(mine) == set(on_doors)
        haproxy = files.get(f"{host}/etc/firebreak/haproxy.cfg")
        assert (haproxy is not None) == bool(on_doors)
        if haproxy is not None:  # the same sections; the ports differ (each one's stride)
            assert [n for n, _ in listens(haproxy.content)] == \
                   [n for n, _ in listens(lab.db_door_config_of(LAYOUT, site, plan))]
