"""Prometheus metrics of the agent."""

from __future__ import annotations

from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from firebreak import __version__
from firebreak.loopwatch import LOOP_STALL_BUCKETS


class AgentMetrics:
    def __init__(self, site: str):
        self.registry = CollectorRegistry()
        self.site = site
        # Which version each site's agent runs (a rolling upgrade shows two): the usual build-info
        # gauge, always 1, the version in its label.
        self.build_info = Gauge("firebreak_build_info", "Firebreak's version on this agent (always 1)",
                                ["site", "version"], registry=self.registry)
        self.build_info.labels(site, __version__).set(1)
        self._probes = Counter("firebreak_probes_total", "Probes of other sites' components",
                               ["site", "target", "component", "result"], registry=self.registry)
        self._failovers = Counter("firebreak_failovers_total", "Leader keys released for dead primaries",
                                  ["site"], registry=self.registry)
        self.dead = Gauge("firebreak_site_dead", "1 when a site is dead by agreement", ["site", "target"],
                          registry=self.registry)
        self.coordinator = Gauge("firebreak_is_coordinator", "1 when this agent coordinates", ["site"],
                                 registry=self.registry)
        # Automation frozen as the coordinator obeys it: only the coordinator reads the frozen key
        # (control/agent.py), so every other agent says 0 and max() over the sites is the answer.
        self._frozen = Gauge("firebreak_frozen", "1 while operators froze automatic failover (the coordinator's "
                             "reading; 0 on other agents)", ["site"], registry=self.registry)
        self._frozen.labels(site).set(0)
        self._refused = Gauge("firebreak_failover_refused", "1 while a cluster's latest failover decision is a "
                              "refusal (the coordinator's; 0 on other agents)", ["site", "cluster"],
                              registry=self.registry)
        self._door_primary = Gauge("firebreak_db_door_primary_route", "1 while this site's database door sends "
                                   "a cluster's writes to a primary, as last applied (0: writes refused, or not "
                                   "steered yet)", ["site", "cluster"], registry=self.registry)

        self._denied = Counter("firebreak_console_denied_total", "Console requests refused before any work "
                               "(unauthenticated, bad login, throttled)", ["site", "why"], registry=self.registry)
        self.etcd_db_bytes = Gauge("firebreak_etcd_db_bytes", "etcd database file size per member",
                                   ["site", "member", "kind"], registry=self.registry)
        self.etcd_alarm = Gauge("firebreak_etcd_alarm", "1 while etcd raises this alarm", ["site", "alarm"],
                                registry=self.registry)

        self._cycle_errors = Counter("firebreak_agent_cycle_errors_total", "Agent loop cycles that failed on an "
                                     "unexpected exception (logged; the loop carried on)", ["site", "loop"],
                                     registry=self.registry)
        self._ignored = Counter("firebreak_ignored_values_total", "Values read from etcd that did not parse "
                                "and were ignored (logged once per revision)", ["site", "kind"], registry=self.registry)
        self._loop_stalls = Histogram("firebreak_event_loop_stall_seconds", "Times the agent's event loop stopped "
                                      "turning for longer than half a second, by how long (the log has what it "
                                      "was doing): probes, votes and failovers wait that long",
                                      ["site"], registry=self.registry, buckets=LOOP_STALL_BUCKETS)

    def observe(self, *, coordinating: bool, frozen: bool, door_writes_to: Mapping[str, str | None],
                refused: Mapping[str, bool] | None = None) -> None:
        """The gauges that mirror the agent's state, set when /metrics is read. `door_writes_to`:
        each cluster on this site's database door -> the member its writes go to (None: nowhere);
        `refused`: each cluster -> whether the coordinator's latest decision refused a failover (a
        former coordinator's stale refusals read 0)."""
        self._frozen.labels(self.site).set(1 if coordinating and frozen else 0)
        for scope, no in (refused or {}).items():
            self._refused.labels(self.site, scope).set(1 if coordinating and no else 0)
        for scope, rw in door_writes_to.items():
            self._door_primary.labels(self.site, scope).set(1 if rw else 0)

    def loop_stall(self, seconds: float) -> None:
        self._loop_stalls.labels(self.site).observe(seconds)

    def cycle_error(self, loop: str) -> None:
        self._cycle_errors.labels(self.site, loop).inc()

    def ignored(self, kind: str) -> None:
        self._ignored.labels(self.site, kind).inc()

    def denied(self, why: str) -> None:
        self._denied.labels(self.site, why).inc()

    def probe(self, target: str, component: str, ok: bool) -> None:
        self._probes.labels(self.site, target, component, "ok" if ok else "failed").inc()

    def failover(self) -> None:
        self._failovers.labels(self.site).inc()
