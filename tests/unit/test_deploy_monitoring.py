"""The monitoring that ships (deploy/prometheus/, deploy/grafana/) against the metrics the agent
really exports: every dashboard query names one, every alert rule's Firebreak metric is exported
(or listed below as awaiting the agent, with why), and the names follow Prometheus's conventions.
promtool's own checks run in tests/web/test_deploy_tools.py."""

import json
import re

import yaml
from prometheus_client import generate_latest

from firebreak.control.metrics import AgentMetrics
from tests.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "firebreak-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "firebreak-alerts.yml"

# Alert rules that need a gauge the agent does not export yet (the state is in /api/status, the
# gauge is not in control/metrics.py). Each name leaves this list the day the agent exports it:
# the last test below fails until it does.
AWAITING_AGENT: dict[str, str] = {}
# Metrics other exporters provide: Prometheus itself (up) and etcd's own metrics listener.
OTHERS = re.compile(r"^(up|etcd_[a-z0-9_]+)$")


def agent_metrics() -> dict[str, str]:
    """name -> type, as the agent's /metrics declares them."""
    text = generate_latest(AgentMetrics("gwangju").registry).decode()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions and keywords are followed by '(' and are
    not metric-shaped words we check; label names sit inside braces, which are removed first)."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    # A histogram is declared once and queried through its series: name_bucket, name_count, name_sum.
    return {re.sub(r"^(firebreak_\w+)_(bucket|count|sum)$", r"\1", w) for w in words
            if w.startswith(("firebreak_", "etcd_")) or w == "up"}


def test_the_agent_exports_build_info_with_its_version():
    from firebreak import __version__

    text = generate_latest(AgentMetrics("gwangju").registry).decode()
    assert f'firebreak_build_info{{site="gwangju",version="{__version__}"}} 1.0' in text


def test_agent_metrics_follow_prometheus_naming():
    found = agent_metrics()
    assert "firebreak_site_dead" in found and "firebreak_build_info" in found
    for name, kind in found.items():
        assert re.fullmatch(r"firebreak_[a-z][a-z0-9_]*", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if "bytes" in name:
            assert name.endswith("_bytes"), name


def test_every_dashboard_query_names_a_metric_the_agent_exports():
    dash = json.loads(DASHBOARD.read_text())
    exported = agent_metrics()
    assert dash["panels"], "an empty dashboard"
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = names_in(target["expr"])
            ours = {n for n in names if n.startswith("firebreak_")}
            assert ours, (panel["title"], target["expr"])
            assert ours <= set(exported), (panel["title"], ours - set(exported))
    # every agent metric that says something on its own is on the dashboard
    shown = {n for p in dash["panels"] for t in p["targets"] for n in names_in(t["expr"])}
    assert set(exported) - shown == set(), set(exported) - shown


def test_every_alert_names_an_exported_metric_or_one_awaited_with_its_reason():
    exported = set(agent_metrics())
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"FirebreakSiteDead", "FirebreakFailoverRefused", "FirebreakAutomationFrozen",
                                           "FirebreakEtcdAlarm", "FirebreakEtcdNearQuota",
                                           "FirebreakDbDoorWithoutPrimary", "FirebreakCoordinatorMissing",
                                           "FirebreakAgentDown"}
    for r in rules:
        names = names_in(r["expr"])
        assert names, r["alert"]
        for n in names:
            assert n in exported or n in AWAITING_AGENT or OTHERS.match(n), (r["alert"], n)
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_awaited_metrics_are_not_exported_yet():
    """When the agent exports one of them, drop it from AWAITING_AGENT (and this stays green)."""
    assert not set(AWAITING_AGENT) & set(agent_metrics())


def _sample(metrics: AgentMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_frozen_is_the_coordinators_reading_and_zero_elsewhere():
    m = AgentMetrics("gwangju")
    assert _sample(m, "firebreak_frozen", site="gwangju") == 0  # there from the start
    m.observe(coordinating=True, frozen=True, door_writes_to={})
    assert _sample(m, "firebreak_frozen", site="gwangju") == 1
    # an agent that is no longer the coordinator may hold a stale reading: it says 0
    m.observe(coordinating=False, frozen=True, door_writes_to={})
    assert _sample(m, "firebreak_frozen", site="gwangju") == 0


def test_a_database_door_route_per_cluster_is_one_while_writes_go_to_a_primary():
    m = AgentMetrics("gwangju")
    m.observe(coordinating=False, frozen=False, door_writes_to={"users": "daejeon", "pay": None})
    assert _sample(m, "firebreak_db_door_primary_route", site="gwangju", cluster="users") == 1
    assert _sample(m, "firebreak_db_door_primary_route", site="gwangju", cluster="pay") == 0
    m.observe(coordinating=False, frozen=False, door_writes_to={"users": None, "pay": "busan"})
    assert _sample(m, "firebreak_db_door_primary_route", site="gwangju", cluster="users") == 0
    assert _sample(m, "firebreak_db_door_primary_route", site="gwangju", cluster="pay") == 1


def test_metrics_read_the_door_routes_the_keeper_last_applied():
    """console_status's /metrics reads the routes as the database door's keeper last put them in
    HAProxy: a cluster it has not steered yet (or lost touch with) has no primary route."""
    from types import SimpleNamespace

    from firebreak.control.config import DbDoorSettings
    from firebreak.control.console_status import _door_writes_to
    from firebreak.control.dbdoor import DbDoorKeeper, Routes

    dd = DbDoorSettings(admin="unix//run/x.sock", host="10.0.0.1", port=5433,
                        clusters={"users": {"port": 5433}, "pay": {"port": 5443}})
    keeper = DbDoorKeeper("/run/x.sock", ["gwangju", "daejeon"])
    agent = SimpleNamespace(cfg=SimpleNamespace(db_door=dd, default_scope="users"), db_door=keeper)
    assert _door_writes_to(agent) == {"users": None, "pay": None}  # not steered yet
    keeper.applied = {"users": Routes("daejeon", ()), "pay": Routes(None, ("gwangju",))}
    assert _door_writes_to(agent) == {"users": "daejeon", "pay": None}
    assert _door_writes_to(SimpleNamespace(cfg=SimpleNamespace(db_door=None), db_door=None)) == {}
