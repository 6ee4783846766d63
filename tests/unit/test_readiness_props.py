"""Invariants of the readiness analysis, and the fast plan checked against a naive oracle."""

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from firebreak.readiness import analyse
from firebreak.topology import topology_from_dict

RANK = {"up": 0, "degraded": 1, "down": 2}
SITES = ["s0", "s1", "s2", "s3"]


@st.composite
def topologies(draw):
    n = draw(st.integers(1, 9))
    names = [f"v{i}" for i in range(n)]
    services = {}
    for i, name in enumerate(names):
        kind = draw(st.sampled_from(["service", "database", "quorum", "ops-tool"]))
        sites = draw(st.lists(st.sampled_from(SITES), min_size=1, max_size=4, unique=True))
        replicas = {s: draw(st.integers(1, 3)) for s in sites}
        svc = {"kind": kind, "replicas": replicas, "needs": draw(st.integers(1, 5))}
        # depends_on only points backwards, so it is acyclic as the loader demands; recovery may
        # point anywhere, which creates the loops the analysis must solve.
        if i:
            svc["depends_on"] = draw(st.lists(st.sampled_from(names[:i]), max_size=3, unique=True))
        others = [m for m in names if m != name]
        if others:
            svc["recovery"] = draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
        if kind == "database":
            svc["primary"] = draw(st.sampled_from(sites))
            # quorum commit only where the loader takes it: standbys in two sites besides the primary's
            svc["replication"] = draw(st.sampled_from(["sync", "async"] + (["quorum"] if len(sites) >= 3 else [])))
            svc["failover"] = draw(st.sampled_from(["auto", "manual"]))
        services[name] = svc
    return {"name": "gen", "sites": SITES, "services": services}


def naive_states(data: dict, lost: set[str]) -> dict[str, str]:
    """The rules as the issue states them, solved by global iteration from "everything down".

    Deliberately simple and slow: no plan, no component ordering.
    """
    svcs = data["services"]
    state = {n: "down" for n in svcs}
    while True:
        new = {}
        for n, s in svcs.items():
            alive = sum(c for site, c in s["replicas"].items() if site not in lost)
            total = sum(s["replicas"].values())
            deps = [state[d] for d in s.get("depends_on", [])]
            if s["kind"] == "quorum" and not alive * 2 > total:
                new[n] = "down"
            elif alive == 0 or "down" in deps:
                new[n] = "down"
            elif (s["kind"] == "database" and s.get("replication") == "quorum" and s["primary"] in lost
                  and any(c > (site == s["primary"]) for site, c in s["replicas"].items() if site in lost)):
                new[n] = "down"   # a standby lost with the primary: Patroni's quorum rule promotes none
            elif (s["kind"] == "database" and s["primary"] in lost and s.get("failover", "manual") == "manual"
                  and any(state[t] == "down" for t in s.get("recovery", []))):
                new[n] = "down"
            elif alive < s["needs"] or "degraded" in deps:
                new[n] = "degraded"
            else:
                new[n] = "up"
        if new == state:
            return state
        state = new


def all_losses():
    return [set(c) for k in (1, 2) for c in combinations(SITES, k)]


@settings(max_examples=300, deadline=None)
@given(topologies())
def test_plan_matches_naive_oracle(data):
    topo = topology_from_dict(data)
    for lost in all_losses():
        assert dict(analyse(topo, sorted(lost)).states) == naive_states(data, lost), lost


@settings(max_examples=200, deadline=None)
@given(topologies(), st.data())
def test_adding_a_replica_in_a_surviving_site_never_makes_anything_worse(data, extra):
    topo = topology_from_dict(data)
    lost = extra.draw(st.sampled_from(all_losses()))
    survivors = [s for s in SITES if s not in lost]
    name = extra.draw(st.sampled_from(sorted(data["services"])))
    site = extra.draw(st.sampled_from(survivors))
    before = analyse(topo, sorted(lost)).states
    more = {**data, "services": {**data["services"]}}
    svc = dict(more["services"][name])
    svc["replicas"] = {**svc["replicas"], site: svc["replicas"].get(site, 0) + 1}
    more["services"][name] = svc
    after = analyse(topology_from_dict(more), sorted(lost)).states
    for n in before:
        assert RANK[after[n]] <= RANK[before[n]], (n, before[n], after[n])


@settings(max_examples=200, deadline=None)
@given(topologies())
def test_losing_more_sites_never_makes_anything_better(data):
    topo = topology_from_dict(data)
    for a in SITES:
        one = analyse(topo, [a]).states
        for b in SITES:
            if b != a:
                two = analyse(topo, sorted({a, b})).states
                assert all(RANK[two[n]] >= RANK[one[n]] for n in one)


@settings(max_examples=200, deadline=None)
@given(topologies())
def test_every_finding_path_is_a_real_chain(data):
    topo = topology_from_dict(data)
    for lost in all_losses():
        result = analyse(topo, sorted(lost))
        for f in result.findings:
            assert f.path[0] == f.service
            for a, b in zip(f.path, f.path[1:]):
                svc = topo.services[a]
                assert b in svc.depends_on or b in svc.recovery, (f, a, b)
            # the last link of a chain is a service that is not up, or closes a loop
            assert result.states[f.path[-1]] != "up" or f.kind in ("data-loss", "stranded")
            if f.kind == "stranded":  # ends at a database that failed over from a lost primary site
                assert topo.services[f.path[-1]].primary in lost
