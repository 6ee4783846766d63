"""Judging a drill on an estate against check's predictions: pure, from synthetic histories."""

from __future__ import annotations

from firebreak.drill import estate
from firebreak.drill.workload import Op
from firebreak.resources import example
from firebreak.topology import load_topology, topology_from_dict

SITES = ["pangyo", "ansan", "siheung"]
ALL = {s: 1 for s in SITES}


def probes(service, site, answered_at, until=20.0, every=0.25):
    """A probe every `every` s from 0 to `until`; answered when answered_at(t) is true."""
    out, t = [], 0.0
    while t < until:
        out.append(Op(estate.PROBE, service, t, t + 0.01, "ok" if answered_at(t) else "failed", site))
        t += every
    return out


def writes(site, resumed_after=None, cut=5.0, until=20.0, every=0.05, key="k"):
    out, t, i = [], 0.0, 0
    while t < until:
        ok = t < cut or (resumed_after is not None and t >= cut + resumed_after)
        out.append(Op("sql", f"{key}{i}", t, t + 0.01, "ok" if ok else "failed", site))
        t += every
        i += 1
    return out


TOPO = topology_from_dict({"name": "t", "sites": SITES, "services": {
    "etcd": {"kind": "quorum", "replicas": ALL},
    "db": {"kind": "database", "primary": "pangyo", "replicas": ALL, "replication": "sync", "failover": "auto",
           "doors": True, "depends_on": ["etcd"]},
    "web": {"replicas": ALL, "depends_on": ["db"]},
    "only-pangyo": {"replicas": {"pangyo": 1}},
    "pair": {"replicas": {"pangyo": 1, "ansan": 1}, "needs": 2},
}}, "t.yaml")


def test_check_is_asked_for_the_faulted_sites():
    p = estate.predictions(TOPO, ["pangyo"])
    assert p["web"] == "up" and p["only-pangyo"] == "down" and p["pair"] == "degraded"
    assert estate.predictions(TOPO, []) == {n: "up" for n in TOPO.services}


def test_a_service_that_came_back_within_the_objective_is_up_and_one_that_did_not_is_down():
    window, surviving = (5.0, 15.0), ["ansan", "siheung"]
    obs = estate.observe(TOPO, {
        "web": probes("web", "ansan", lambda t: t < 5 or t > 6.5) + probes("web", "siheung", lambda t: True),
        "db": estate.as_probes(writes("ansan", resumed_after=1.4)),
        "etcd": [Op(estate.PROBE, "etcd", t / 4, t / 4 + 0.01, "ok", estate.ANY_SITE) for t in range(80)],
        "pair": probes("pair", "ansan", lambda t: t < 5 or t > 9.5),
    }, window, surviving, objective=3.0)
    assert obs["web"].state == "up" and 1.0 < obs["web"].unanswered_s < 2.0
    assert obs["db"].state == "up"
    assert obs["pair"].state == "down" and "through ansan" in obs["pair"].why
    assert obs["only-pangyo"].state == "down"   # nowhere left to run
    assert obs["etcd"].state == "up"


def test_capacity_below_needs_and_a_degraded_dependency_are_degraded():
    topo = topology_from_dict({"name": "t", "sites": SITES, "services": {
        "pair": {"replicas": {"pangyo": 1, "ansan": 1}, "needs": 2},
        "front": {"replicas": ALL, "depends_on": ["pair"]}}}, "t.yaml")
    obs = estate.observe(topo, {"pair": probes("pair", "ansan", lambda t: True),
                                "front": probes("front", "ansan", lambda t: True)},
                         (5.0, 15.0), ["ansan", "siheung"], 3.0)
    assert obs["pair"].state == "degraded" and "1 of the 2" in obs["pair"].why
    assert obs["front"].state == "degraded" and "pair" in obs["front"].why


def test_failures_name_the_service_and_the_reason():
    predicted = {"a": "up", "b": "down", "c": "degraded", "d": "up"}
    observed = {"a": estate.Observation("down", 7.5, "unanswered through ansan for 7.50 s"),
                "b": estate.Observation("up", 0.3, "answered everywhere"),
                "c": estate.Observation("up", 0.2, "answered"),
                "d": estate.Observation("up", 0.2, "answered")}
    services, details, failures = estate.compare(predicted, observed, 3.0)
    assert services["a"] == {"predicted": "up", "observed": "down", "as_predicted": False}
    assert services["d"]["as_predicted"] and not services["c"]["as_predicted"]
    assert len(failures) == 2
    assert failures[0].startswith("a: predicted up, observed down: unanswered through ansan for 7.50 s")
    assert failures[1].startswith("b: predicted down, but it kept answering")
    assert details["a"]["unanswered_s"] == 7.5


def test_each_cluster_has_its_own_unavailability_and_losses():
    fast, slow = writes("ansan", 1.2, key="f"), writes("ansan", 2.6, key="s")
    stored = {"fast": {o.key for o in fast if o.outcome == "ok"}, "slow": {o.key for o in slow if o.outcome == "ok"} - {"s3"}}
    doc = estate.clusters_doc({"fast": fast, "slow": slow}, stored, [("power-cut", "pangyo", 5.0, 12.0)])
    assert 1.1 < doc["fast"]["write_unavailability_s"] < 1.4 and 2.5 < doc["slow"]["write_unavailability_s"] < 2.8
    assert doc["fast"]["acked_lost"] == 0 and doc["slow"]["acked_lost"] == 1
    assert set(doc["fast"]) == {"write_unavailability_s", "acked_writes", "acked_lost"}
    never = estate.clusters_doc({"x": writes("ansan", None)}, {}, [("power-cut", "pangyo", 5.0, 12.0)])
    assert never["x"]["write_unavailability_s"] is None


def test_the_report_fails_on_a_loss_or_a_broken_prediction_and_counts_every_cluster():
    from firebreak.drill.scenario import FaultStep, Scenario
    topo = load_topology(example("estate.yaml"))
    sc = Scenario(name="cut", steps=[FaultStep(fault="power-cut", site="pangyo")])
    hist = {c: writes("ansan", 1.3, key=c) for c in ("users-db", "messaging-db", "payments-db", "claims-db")}
    stored = {c: {o.key for o in ops if o.outcome == "ok"} for c, ops in hist.items()}
    every = {n: probes(n, s, lambda t: True) for n in ("login", "messaging", "payments", "notifications", "claims")
             for s in ("ansan",)}
    every["site-agent"] = every["ops-console"] = probes("x", "ansan", lambda t: True)
    every["etcd"] = [Op(estate.PROBE, "etcd", t / 4, t / 4 + 0.01, "ok", estate.ANY_SITE) for t in range(80)]
    pred = estate.predictions(topo, ["pangyo"])
    args = dict(scenario=sc, topology=topo, predicted=pred, faulted=["pangyo"], sites=SITES, start=0.0, end=20.0,
                faults=[("power-cut", "pangyo", 5.0, 12.0)], silenced={}, disagreements=[])
    ok = estate.report(histories=hist, stored=stored, probes=every, **args)
    assert ok["verdict"] == "pass", ok["failures"]
    assert ok["acked_writes"] == sum(c["acked_writes"] for c in ok["clusters"].values())
    assert all(s["as_predicted"] for s in ok["services"].values())
    lossy = {**stored, "claims-db": set(list(stored["claims-db"])[5:])}
    bad = estate.report(histories=hist, stored=lossy, probes={**every, "login": probes("login", "ansan", lambda t: t < 5)},
                        **args)
    assert bad["verdict"] == "fail" and bad["acked_lost"] == 5
    assert any(f.startswith("claims-db: 5 acknowledged writes") for f in bad["failures"])
    assert any(f.startswith("login: predicted up, observed down") for f in bad["failures"])
