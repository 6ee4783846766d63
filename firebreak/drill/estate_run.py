"""Running a drill on an estate lab (`lab up --topology`): the I/O shell around drill/estate.py.

Before the fault it asks `check` what the fault should do to every service of the lab's
topology; during it an ordinary client writes to every cluster through a spared site's database
door, and every service is probed through every site's front door (ops tools at their consoles,
etcd by reads); after it, the histories are judged against the predictions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import psycopg

from firebreak.control.keys import DEFAULT
from firebreak.drill import checks
from firebreak.drill import estate as judge_estate
from firebreak.drill.harness import (DECLARE_MARGIN, Active, Declaration, Event, Progress, check_consistency, drill_id,
                                     drive, fault_rows, finish_report, planned_seconds, set_frozen, silenced,
                                     wait_healthy)
from firebreak.drill.report import write_report
from firebreak.drill.scenario import FaultStep, Scenario, check_sites
from firebreak.drill.workload import ORDINARY_TABLE, History, Op, OrdinaryWriter, prepare_ordinary_table
from firebreak.errors import EtcdError
from firebreak.lab import lab
from firebreak.lab.net import have_nft
from firebreak.lab.state import lab_home, load_secrets
from firebreak.topology import Kind, load_topology

PROBE_INTERVAL = 0.25
LOSING_FAULTS = ("power-cut", "isolate")  # faults that take a site out of everyone else's reach


class Prober(threading.Thread):
    """Asks one service through one site's door (or console) every PROBE_INTERVAL: 200 is an answer."""

    def __init__(self, service: str, site: str, url: str, history: History, stop: threading.Event):
        super().__init__(daemon=True)
        self.service, self.site, self.url, self.history, self.stop_event = service, site, url, history, stop

    def run(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self.stop_event.is_set():
                t0 = time.monotonic()
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError:
                    status = 0
                self.history.add(Op(judge_estate.PROBE, self.service, t0, time.monotonic(),
                                    "ok" if status == 200 else "failed", self.site, status))
                self.stop_event.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - t0)))


class EtcdProber(threading.Thread):
    """Reads a key from etcd every PROBE_INTERVAL (any member): the quorum answering."""

    def __init__(self, service: str, history: History, stop: threading.Event):
        super().__init__(daemon=True)
        self.service, self.history, self.stop_event = service, history, stop

    def run(self) -> None:
        async def loop() -> None:
            etcd = lab.etcd_client(timeout=1)
            try:
                while not self.stop_event.is_set():
                    t0 = time.monotonic()
                    try:
                        await etcd.get(DEFAULT.coordinator)
                        ok = True
                    except EtcdError:
                        ok = False
                    self.history.add(Op(judge_estate.PROBE, self.service, t0, time.monotonic(),
                                        "ok" if ok else "failed", judge_estate.ANY_SITE))
                    await asyncio.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - t0)))
            finally:
                await etcd.close()
        asyncio.run(loop())


def busiest_site(st: dict) -> str | None:
    """The site holding the most primaries now (the first in site order on a tie)."""
    primaries = [c["primary"] for c in st["clusters"].values() if c["primary"]]
    return max(st["sites"], key=lambda s: (primaries.count(s), -list(st["sites"]).index(s))) if primaries else None


def run(scenario: Scenario, report_dir: Path, progress: Progress = lambda m: None, label: str | None = None) -> dict:
    first = lab.status()
    check_sites(scenario, list(first["sites"]), label or scenario.name, net=first["net"], can_filter=have_nft(),
                roles=("primary",))
    st = wait_healthy()
    topology = load_topology(st["topology_file"])
    sites = list(st["sites"])
    token = load_secrets(lab_home()).ops_token
    agents = any(s.get("console") for s in st["sites"].values())
    if scenario.baseline == "firebreak" and agents and not lab.settled():
        progress("note: etcd's leader is still where the agents would not keep it")
    if scenario.baseline == "patroni" and agents:
        set_frozen(st, True, token)
    target = busiest_site(st)
    faulted = [target if step.site == "primary" else step.site for step in scenario.steps
               if isinstance(step, FaultStep) and step.fault in LOSING_FAULTS]
    predicted = judge_estate.predictions(topology, faulted)
    progress("check predicts for the loss of " + (", ".join(faulted) or "no site") + ": "
             + ", ".join(f"{n} {s}" for n, s in predicted.items() if topology.services[n].kind == Kind.SERVICE))
    spared = next((s for s in sites if s not in faulted), sites[0])

    stop = threading.Event()
    histories = {name: History() for name in st["clusters"]}
    probes = History()
    threads: list[threading.Thread] = []
    for name in st["clusters"]:
        # through the spared site's database door where the cluster declares doors, else to its hosts
        dsn = st["cluster_client_dsns"][name][spared]
        prepare_ordinary_table(dsn)
        threads.append(OrdinaryWriter(spared, dsn, histories[name], stop))
    for name, svc in topology.services.items():
        if svc.kind == Kind.SERVICE and name in st["services"]:
            threads += [Prober(name, site, url, probes, stop) for site, url in st["services"][name]["urls"].items()]
        elif svc.kind == Kind.OPS_TOOL and agents:
            threads += [Prober(name, site, s["console"] + "/healthz", probes, stop)
                        for site, s in st["sites"].items() if s.get("console")]
        elif svc.kind == Kind.QUORUM:
            threads.append(EtcdProber(name, probes, stop))
    events: list[Event] = []
    faults: list[Active] = []
    start, start_wall = time.monotonic(), time.time()
    drill = drill_id(scenario.name, start_wall)
    declaration = Declaration(drill, until=start_wall + planned_seconds(scenario) + DECLARE_MARGIN)
    for t in threads:
        t.start()
    progress(f"workload: an ordinary client per cluster ({len(histories)}) through {spared}'s database door; "
             f"every service probed through every site's door")
    time.sleep(2.0)

    def rto_of(at: float) -> float | None:
        rtos = [checks.write_rto(checks.completed_since(h.ops, at), at, "sql") for h in histories.values()]
        return None if any(r is None for r in rtos) else max(rtos, default=0.0)
    end = drive(scenario, threads, stop, rto_of, lambda _: busiest_site(lab.status()), faults, events, progress,
                unfreeze=token if scenario.baseline == "patroni" and agents else None, declaration=declaration)
    final = lab.status()
    progress("checking that the replicas agree (etcd hashes, every cluster's PostgreSQL timelines)")
    disagreements = check_consistency(final)
    stored = {}
    for name, c in final["clusters"].items():
        with psycopg.connect(c["dsn"]) as conn:
            stored[name] = {r[0] for r in conn.execute(f"SELECT key FROM {ORDINARY_TABLE}")}
    service_probes: dict[str, list[Op]] = {}
    for o in probes.ops:
        service_probes.setdefault(o.key, []).append(o)
    report = judge_estate.report(
        scenario=scenario, histories={n: list(h.ops) for n, h in histories.items()}, stored=stored,
        probes=service_probes, topology=topology, predicted=predicted, faulted=faulted, sites=sites, start=start,
        end=end, faults=fault_rows(faults, events, end), silenced=silenced(faults), disagreements=disagreements)
    finish_report(report, start=start, start_wall=start_wall, final=final, agents=agents, events=events, drill=drill,
                  # where each cluster's primary and synchronous standby were when the drill began
                  primaries_before={n: c["primary"] for n, c in st["clusters"].items()},
                  sync_standbys_before={n: c["sync_standby"] for n, c in st["clusters"].items()})
    write_report(report, judge_estate.chart_ops({n: list(h.ops) for n, h in histories.items()}, service_probes,
                                                report["services"]), start, report_dir,
                 title="Each cluster's writes and each service's answers per second")
    return report
