"""The drill runner of the default lab (one PostgreSQL cluster behind three sites): workload on,
faults in through the harness, faults out, then the history is judged.

This is the I/O shell; what passes or fails is decided by drill.checks on the recorded history
and the final database contents, and drill.verdict turns those into the report.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from firebreak.control.keys import DEFAULT as DEFAULT_KEYS
from firebreak.drill import checks
from firebreak.drill.chaos import summary as chaos_summary
from firebreak.drill.harness import (DECLARE_MARGIN, Active, Declaration, Event, Progress, check_consistency, drill_id,
                                     drive, fault_rows, findings, finish_report, planned_seconds, set_frozen, silenced,
                                     wait_healthy)
from firebreak.drill.report import write_report
from firebreak.drill.scenario import ROLE_TARGETS, FaultStep, Scenario, check_sites, site_in_role
from firebreak.drill.verdict import judge
from firebreak.drill.workload import (ORDINARY_TABLE, History, Op, OrdinaryWriter, Reader, Router, Writer,
                                     prepare_ordinary_table, seed_report)
from firebreak.errors import EtcdError
from firebreak.lab import lab
from firebreak.lab.net import have_nft
from firebreak.lab.state import lab_home, load_secrets
from firebreak.lab.status import SYNC_ROLES


@dataclass(eq=False)  # a thread must stay hashable
class Operator(threading.Thread):
    """Tries ops actions from every site's console once a second, and records each try.

    Reads (status, ledger, audit) and the release store and deploy: what operators need during
    an incident. Actions that would change the system under test (freeze, switchover,
    evacuate) are exercised by their own end-to-end test instead.
    """

    consoles: dict[str, str]
    token: str
    history: History
    stop: threading.Event

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=3.0, headers={"Authorization": f"Bearer {self.token}"}) as client:
            while not self.stop.is_set():
                n += 1
                for site, url in self.consoles.items():
                    version = f"drill-{site}-{n}"
                    for action, method, path, body in (
                            ("status", "GET", "/api/status", None), ("ledger", "GET", "/api/ledger", None),
                            ("audit", "GET", "/api/audit", None),
                            ("release", "POST", "/api/actions/release", {"version": version}),
                            ("deploy", "POST", "/api/actions/deploy", {"version": version})):
                        t0 = time.monotonic()
                        try:
                            r = client.request(method, url + path, json=body)
                            ok, status, detail = r.status_code == 200, r.status_code, r.text[:200]
                        except httpx.HTTPError as e:
                            ok, status, detail = False, 0, repr(e)[:200]
                        self.history.add(Op("ops", action, t0, time.monotonic(), "ok" if ok else "failed", site, status,
                                            detail="" if ok else detail))
                self.stop.wait(1.0)


def run(scenario: Scenario, report_dir: Path, progress: Progress = lambda m: None, label: str | None = None,
        chaos: tuple[int, int] | None = None) -> dict:
    """Run a scenario against the default lab. `label` names it in errors (its file, say). A scenario the
    lab cannot run (unknown site, a fault its network mode cannot produce) is refused at once,
    before waiting for health or changing anything. `chaos`: (seed, minutes) of the chaos plan the
    scenario is, for the report's chaos summary."""
    first = lab.status()
    check_sites(scenario, list(first["sites"]), label or scenario.name, net=first["net"], can_filter=have_nft())
    st = wait_healthy()
    if scenario.baseline == "firebreak" and any(s.get("console") for s in st["sites"].values()):
        # Start from the steady state the agents keep: etcd's leader outside the primary's site.
        if not lab.settled():
            progress("note: etcd's leader is still in the primary's site; the agents have not moved it yet")
    sites = list(st["sites"])
    token = load_secrets(lab_home()).ops_token
    agents = any(s.get("console") for s in st["sites"].values())
    if scenario.baseline == "patroni" and agents:
        set_frozen(st, True, token)
    doors = {n: s["door"] for n, s in st["sites"].items()}
    consoles = {n: s["console"] for n, s in st["sites"].items() if s.get("console")}
    history, stop = History(), threading.Event()
    report_id = seed_report(doors[next(n for n in sites if st["sites"][n]["postgres"]["role"] != "primary")])
    router = Router(consoles, stop) if consoles and scenario.baseline == "firebreak" else None
    threads: list[threading.Thread] = [Writer(doors, history, stop, seed=i, rate=scenario.rate, router=router)
                                       for i in range(scenario.clients)]
    if router is not None:
        threads.append(router)
    admin = load_secrets(lab_home()).app_admin
    threads += [Reader(n, doors[n], report_id, history, stop, token=admin) for n in sites]
    if consoles:
        threads.append(Operator(consoles, token, history, stop))
    # A step aimed at etcd's leader spares its site's door too: `st` names no etcd leader, and
    # without it the client once wrote through the far end of the cut link for the whole fault
    # (15.3 s in a partition-etcd drill whose app writers were back in 6.3 s).
    aims_at_etcd_leader = any(isinstance(step, FaultStep) and "etcd-leader" in step.targets for step in scenario.steps)
    ordinary_door = ordinary_door_site(scenario, naming_etcd_leader(st) if aims_at_etcd_leader else st)
    if ordinary_door is not None and st.get("db_door_dsns"):
        prepare_ordinary_table(st["postgres_dsn"])
        threads.append(OrdinaryWriter(ordinary_door, st["db_door_dsns"][ordinary_door], history, stop))
    events: list[Event] = []
    faults: list[Active] = []
    start = time.monotonic()
    start_wall = time.time()
    drill = drill_id(scenario.name, start_wall)
    declaration = Declaration(drill, until=start_wall + planned_seconds(scenario) + DECLARE_MARGIN)
    for t in threads:
        t.start()
    progress(f"workload: {scenario.clients} writers through {len(doors)} doors, readers in every site"
             + (f", an ordinary database client through {ordinary_door}'s database door" if ordinary_door else ""))
    time.sleep(2.0)
    end = drive(scenario, threads, stop, lambda at: checks.write_rto(checks.completed_since(history.ops, at), at),
                lambda target: site_in_role(naming_etcd_leader(lab.status()) if target == "etcd-leader"
                                            else lab.status(), target),
                faults, events, progress, unfreeze=token if scenario.baseline == "patroni" and agents else None,
                declaration=declaration)
    final = lab.status()
    progress("checking that the replicas agree (etcd hashes, PostgreSQL timelines)")
    disagreements = check_consistency(final)
    with psycopg.connect(final["postgres_dsn"]) as conn:
        stored = checks.stored_counts(r[0] for r in conn.execute(
            "SELECT idempotency_key FROM reports WHERE idempotency_key IS NOT NULL"))
        ordinary_stored = set()
        if ordinary_door is not None:
            ordinary_stored = {r[0] for r in conn.execute(f"SELECT key FROM {ORDINARY_TABLE}")}
    ops = list(history.ops)
    report = judge(
        scenario=scenario, ops=ops, stored=stored, sites=sites, start=start, end=end,
        faults=fault_rows(faults, events, end), silenced=silenced(faults), disagreements=disagreements,
        ordinary=(ordinary_door, ordinary_stored) if ordinary_door else None, findings=findings(events, start),
    )
    finish_report(report, start=start, start_wall=start_wall, final=final, agents=agents, events=events, drill=drill)
    if chaos is not None:
        report["chaos"] = chaos_summary(scenario, report, *chaos)
    _record_ledger(final, report)
    write_report(report, ops, start, report_dir)
    return report


def naming_etcd_leader(st: dict) -> dict:
    """`lab status` with etcd's leader's site added (site_in_role reads it; status does not ask)."""
    return {**st, "etcd_leader": lab.etcd_leader_site()}


def ordinary_door_site(scenario: Scenario, st: dict) -> str | None:
    """The database door the ordinary client uses: one in a site no step of the scenario faults
    (a client in a site that loses power is lost with it), the synchronous standby's if possible."""
    targets = {site_in_role(st, target) if target in ROLE_TARGETS else target
               for step in scenario.steps if isinstance(step, FaultStep) for target in step.targets}
    spared = [n for n in st["sites"] if n not in targets]
    spared.sort(key=lambda n: st["sites"][n]["postgres"]["role"] not in SYNC_ROLES)
    return spared[0] if spared else None


def _record_ledger(st: dict, report: dict) -> None:
    """Each drill's outages go into the outage ledger (etcd, replicated to every site), tagged as a drill."""

    async def put_all() -> None:
        etcd = lab.etcd_client(timeout=2)
        try:
            for f in report["faults"]:
                entry = {"site": f["site"], "start": f["start_wall"], "end": f["end_wall"], "kind": f["fault"],
                         "source": "drill", "scenario": report["scenario"]["name"], "verdict": report["verdict"],
                         "drill": report["drill"]}
                await etcd.put(DEFAULT_KEYS.ledger_entry(f["start_wall"], f["site"], drill=True), json.dumps(entry))
        finally:
            await etcd.close()
    try:
        asyncio.run(put_all())
    except EtcdError:
        pass  # the report itself has every figure; the ledger entry is a convenience for claims
