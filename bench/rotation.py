"""Certificates rotated and agents restarted one site at a time, while writes flow: the figures
issue 27 asks for (failed writes, dead verdicts, failovers), over several rounds of each.

    .venv/bin/firebreak lab up
    .venv/bin/python bench/rotation.py --rounds 5

On a running lab with agents (as root: the netns lab). Each round runs the lab's load (writers
through every site's web door, an ordinary libpq client through the second site's database
door), then one of:

- rotation: every certificate the lab made (etcd members, doors, each role's client) issued
  again with a new key by the lab's CA and written with firebreak/pki's writer, the one `firebreak
  pki rotate` uses on real hosts (firebreak/lab/rotation.py), while nothing is restarted;
- rolling restart: each site's agent stopped and started, one site at a time, the next only once
  every console names the same coordinator again (docs/DEPLOY.md, "Upgrades and rolling restarts");
- the alternative in the same run: every agent restarted at once, the shortcut the procedure
  tells an operator not to take;

and counts, from the clients' histories and the ledger: writes acknowledged and failed (web and
ordinary), the longest write gap, acknowledged writes lost, site incidents opened (a site voted
dead) and failovers (the primary moved). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firebreak.drill import checks  # noqa: E402
from firebreak.drill.harness import wait_healthy  # noqa: E402
from firebreak.drill.workload import (ORDINARY_TABLE, History, OrdinaryWriter, Writer,  # noqa: E402
                                      prepare_ordinary_table)
from firebreak.lab import lab  # noqa: E402
from firebreak.lab.rotation import rotate_all  # noqa: E402
from firebreak.lab.state import lab_home, load  # noqa: E402


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := predicate():
            return got
        time.sleep(0.5)
    raise SystemExit(f"bench: timed out after {timeout:.0f} s waiting for {what}")


def incidents(console: str) -> int:
    return sum(1 for e in httpx.get(console + "/api/ledger", timeout=5).json() if e.get("kind") != "drill")


def stored(dsn: str) -> tuple[set, set]:
    with psycopg.connect(dsn) as conn:
        web = {r[0] for r in conn.execute("SELECT idempotency_key FROM reports WHERE idempotency_key IS NOT NULL")}
        sql = {r[0] for r in conn.execute(f"SELECT key FROM {ORDINARY_TABLE}")}
    return web, sql


def under_load(st: dict, action, settle: float = 3.0) -> tuple[list, float, float, float]:
    """Run `action` while the lab's load runs; (ops, when it began, when it ended, its seconds)."""
    sites = list(st["sites"])
    history, stop = History(), threading.Event()
    doors = {n: s["door"] for n, s in st["sites"].items()}
    prepare_ordinary_table(st["postgres_dsn"])
    threads = [Writer(doors, history, stop, seed=i) for i in range(6)]
    threads.append(OrdinaryWriter(sites[1], st["db_door_dsns"][sites[1]], history, stop))
    for t in threads:
        t.start()
    time.sleep(1.5)
    at = time.monotonic()
    try:
        action()
        took = time.monotonic() - at
        time.sleep(settle)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return list(history.ops), at, time.monotonic(), took


def judge(kind: str, st: dict, ops: list, at: float, end: float, took: float, incidents_before: int) -> dict:
    after = wait_healthy(180)
    web, sql = stored(after["postgres_dsn"])
    consoles = {n: s["console"] for n, s in after["sites"].items()}
    wait_for(lambda: lab.settled_coordinator(consoles), 60, "a settled coordinator")
    first = next(iter(consoles.values()))
    return {
        "kind": kind,
        "action_s": round(took, 2),
        "writes_acked": len(checks.acked(ops)),
        "writes_failed": sum(1 for o in ops if o.kind == "write" and o.outcome != "ok"),
        "ordinary_acked": len(checks.acked(ops, "sql")),
        "ordinary_failed": sum(1 for o in ops if o.kind == "sql" and o.outcome != "ok"),
        "max_write_gap_s": round(checks.max_write_gap(ops, at, end), 3),
        "max_ordinary_gap_s": round(checks.max_write_gap(ops, at, end, "sql"), 3),
        "lost": len(checks.lost_writes(ops, web)) + len(checks.lost_writes(ops, sql, "sql")),
        "dead_verdicts": incidents(first) - incidents_before,
        "failovers": int(after["primary"] != st["primary"]),
    }


def one_round(kind: str) -> dict:
    st = wait_healthy(180)
    consoles = {n: s["console"] for n, s in st["sites"].items()}
    wait_for(lambda: lab.settled_coordinator(consoles), 60, "a settled coordinator")
    before = incidents(next(iter(consoles.values())))
    sites = list(st["sites"])
    layout = load(lab_home()).layout

    def rotation():
        rotate_all(layout)

    def rolling():
        for site in sites:
            lab.stop_component(site, "agent")
            lab.start_component(site, "agent")
            wait_for(lambda: lab.settled_coordinator(consoles), 60, f"the coordinator to settle after {site}'s restart")

    def all_at_once():
        for site in sites:
            lab.stop_component(site, "agent")
        for site in sites:
            lab.start_component(site, "agent")
        wait_for(lambda: lab.settled_coordinator(consoles), 60, "the coordinator to settle")

    action = {"rotation": rotation, "rolling-restart": rolling, "all-agents-at-once": all_at_once}[kind]
    ops, at, end, took = under_load(st, action)
    return judge(kind, st, ops, at, end, took, before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each kind")
    args = ap.parse_args()
    if lab.status().get("sites") is None:
        raise SystemExit("bench: no lab is up; run `firebreak lab up` first")
    started = datetime.now(timezone.utc)
    rounds = []
    for i in range(args.rounds):
        for kind in ("rotation", "rolling-restart", "all-agents-at-once"):
            r = one_round(kind)
            rounds.append(r)
            print(f"round {i + 1} {kind}: {json.dumps(r)}", file=sys.stderr, flush=True)
    totals = {}
    for kind in ("rotation", "rolling-restart", "all-agents-at-once"):
        rs = [r for r in rounds if r["kind"] == kind]
        totals[kind] = {
            "rounds": len(rs),
            **{k: sum(r[k] for r in rs) for k in ("writes_acked", "writes_failed", "ordinary_acked", "ordinary_failed",
                                                 "lost", "dead_verdicts", "failovers")},
            "worst_write_gap_s": max(r["max_write_gap_s"] for r in rs),
            "worst_ordinary_gap_s": max(r["max_ordinary_gap_s"] for r in rs),
        }
    print(json.dumps({
        "command": f"bench/rotation.py --rounds {args.rounds}", "totals": totals, "rounds": rounds,
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.platform()}",
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "ended": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }, indent=2))


if __name__ == "__main__":
    main()
