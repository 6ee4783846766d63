"""Quorum commit vs plain synchronous mode vs Patroni alone, in one run: what losing a site costs
an ordinary client (psycopg, libpq defaults, reconnect on error) writing through a spared site's
database door, when the lost site holds the primary and when it holds a standby.

Modes, each on a fresh lab:
  quorum   `lab up --replication quorum`, agents on: Patroni's synchronous_mode: quorum
           (ANY 1 of the two other sites' standbys);
  sync     `lab up`, agents on: synchronous_mode with one named standby (today's default);
  patroni  `lab up --no-agents`: synchronous_mode, Patroni and HAProxy's own health checks alone
           (the usual recipe).

Faults (each held HOLD seconds, healed, the lab healthy and settled again before the next):
power-cut / isolate of the primary's site, power-cut / isolate of a standby's site. Per fault:
write unavailability (first acknowledged write after the fault), longest write gap during the
hold, commit latency p99 during the hold minus p99 over the 10 s before, acknowledged, lost.

Run (as root: network namespaces): .venv/bin/python bench/replication.py --repeat 5
`--repeat quorum=20,sync=20,patroni=5` runs each mode its own number of times: Patroni alone
never resumes writes within the hold after a primary fault (its ttl is 20 s), and a run of it
costs as much as one of the others.
Writes docs/bench/replication.json and prints the Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import checks  # noqa: E402
from firebreak.drill.workload import ORDINARY_TABLE, History, OrdinaryWriter, prepare_ordinary_table  # noqa: E402
from firebreak.lab import lab  # noqa: E402

HOLD = 12.0
BEFORE = 10.0
WRITERS = 3
MODES = {"quorum": {"replication": "quorum", "agents": True},
         "sync": {"replication": "sync", "agents": True},
         "patroni": {"replication": "sync", "agents": False},
         # For the etcd rows: what failsafe_mode buys, on the same lab with it turned off.
         "sync-nofailsafe": {"replication": "sync", "agents": True, "failsafe": False}}
FAULTS = ("power-cut primary", "isolate primary", "power-cut standby", "isolate standby")
# etcd away for a minute while every database server is healthy (Patroni's failsafe_mode): every
# member paused, or two of three (the primary's own kept: the harder case, a member that accepts
# connections and serves nothing). Run with --faults etcd-all,etcd-quorum.
ETCD_FAULTS = {"etcd-all": "every etcd member stopped", "etcd-quorum": "etcd's quorum lost"}
ETCD_HOLD = 60.0


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def wait_healthy(timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = lab.status()
            if st["healthy"]:
                return st
        except Exception:  # noqa: BLE001 - a lab settling may refuse for a moment
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the lab was not healthy within {timeout:.0f} s")


def stored_keys(dsn: str, patience: float = 60.0) -> set[str]:
    """The ordinary client's stored keys, read from the primary. A lab that has just read healthy
    may still be restarting a member (Patroni alone, after its old primary came back: "the
    database system is shutting down", the others read-only for a moment): asked again."""
    import psycopg
    deadline = time.monotonic() + patience
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                return {r[0] for r in conn.execute(f"SELECT key FROM {ORDINARY_TABLE}")}
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def standby_of(st: dict) -> str:
    return next(n for n, s in st["sites"].items() if s["postgres"]["role"] in ("sync_standby", "quorum_standby"))


def etcd_drill(fault: str) -> dict:
    """etcd away for ETCD_HOLD s, then back for 15 s: writes acknowledged, longest gap, demotions
    (a change of primary or timeline), lost."""
    st = wait_healthy()
    primary = st["primary"]
    spared = next(n for n in st["sites"] if n != primary)
    paused = list(st["sites"]) if fault == "etcd-all" else [n for n in st["sites"] if n != primary]
    prepare_ordinary_table(st["postgres_dsn"])
    history, stop = History(), threading.Event()
    writers = [OrdinaryWriter(spared, st["db_door_dsns"][spared], history, stop, interval=0.01) for _ in range(WRITERS)]
    for w in writers:
        w.start()
    time.sleep(BEFORE)
    at = time.monotonic()
    try:
        for s in paused:
            lab.pause(s, "etcd")
        time.sleep(ETCD_HOLD)
    finally:
        for s in paused:
            lab.resume(s)
    time.sleep(15.0)
    stop.set()
    for w in writers:
        w.join(timeout=10)
    after = wait_healthy()
    ops = list(history.ops)
    acked = checks.acked(ops, "sql")
    stored = stored_keys(after["postgres_dsn"])
    return {"fault": fault, "victim": ",".join(paused), "via": spared, "rto_s": 0.0,
            "max_gap_s": round(checks.max_write_gap(ops, at, at + ETCD_HOLD + 15.0, "sql"), 3),
            "acked_during": len([o for o in acked if at <= o.complete <= at + ETCD_HOLD]),
            "p99_before_ms": 0.0, "p99_during_ms": 0.0, "p99_added_ms": 0.0,
            "acked": len(acked), "lost": len(checks.lost_writes(ops, stored, "sql")),
            "servers": sorted({o.primary for o in acked if o.complete >= at}),
            "primary_after": after["primary"], "demoted": after["primary"] != primary}


def one_drill(fault: str) -> dict:
    if fault in ETCD_FAULTS:
        return etcd_drill(fault)
    st = wait_healthy()
    kind, role = fault.split()
    victim = st["primary"] if role == "primary" else standby_of(st)
    spared = next(n for n in st["sites"] if n not in (victim, st["primary"])) if role == "primary" else st["primary"]
    dsn = st["db_door_dsns"][spared]
    prepare_ordinary_table(st["postgres_dsn"])
    history, stop = History(), threading.Event()
    writers = [OrdinaryWriter(spared, dsn, history, stop, interval=0.01) for _ in range(WRITERS)]
    for w in writers:
        w.start()
    time.sleep(BEFORE)
    at = time.monotonic()
    if kind == "power-cut":
        lab.power_off(victim)
    else:
        lab.isolate(victim)
    time.sleep(HOLD)
    stop.set()
    for w in writers:
        w.join(timeout=10)
    if kind == "power-cut":
        lab.power_on(victim)
    else:
        lab.unisolate(victim)
    after = wait_healthy()
    ops = list(history.ops)
    acked = checks.acked(ops, "sql")
    lat = lambda lo, hi: [(o.complete - o.invoke) * 1000 for o in acked if lo <= o.invoke and o.complete <= hi]  # noqa: E731
    before_p99, during_p99 = nearest_rank(lat(at - BEFORE, at), 99), nearest_rank(lat(at, at + HOLD), 99)
    stored = stored_keys(after["postgres_dsn"])
    rto = checks.write_rto(ops, at, "sql", until=at + HOLD)
    return {"fault": fault, "victim": victim, "via": spared, "rto_s": None if rto is None else round(rto, 3),
            "max_gap_s": round(checks.max_write_gap(ops, at, at + HOLD, "sql"), 3),
            "p99_before_ms": round(before_p99, 1), "p99_during_ms": round(during_p99, 1),
            "p99_added_ms": round(during_p99 - before_p99, 1),
            "acked": len(acked), "lost": len(checks.lost_writes(ops, stored, "sql")),
            "primary_after": after["primary"]}


def set_failsafe(on: bool) -> None:
    """Patroni's dynamic configuration, as `patronictl edit-config` would change it."""
    import httpx

    from firebreak.lab.state import lab_home, load_secrets
    st = wait_healthy()
    url = st["sites"][st["primary"]]["patroni"].rstrip("/") + "/config"
    r = httpx.patch(url, json={"failsafe_mode": on}, auth=("firebreak", load_secrets(lab_home()).patroni_api), timeout=10)
    r.raise_for_status()
    assert r.json().get("failsafe_mode") is on, r.text


def never_resumed(row: dict) -> bool:
    """Whether a drill's writes never flowed again during the hold. Rows measured before
    write_rto took the hold's end (runs 1-4) read the one write that slipped in as the fault
    landed as their unavailability (Patroni alone: "0.00 s" and then nothing for 12 s): a longest
    gap that takes all but the settle second of the hold says what that write hid."""
    return row["rto_s"] is None or row["max_gap_s"] >= HOLD - checks.SETTLE


def summary(rows: list[dict]) -> dict:
    out: dict = {}
    for key in dict.fromkeys((r["mode"], r["fault"]) for r in rows):
        mine = [r for r in rows if (r["mode"], r["fault"]) == key]
        rtos = [float("inf") if never_resumed(r) else r["rto_s"] for r in mine]
        added = [r["p99_added_ms"] for r in mine if not math.isnan(r["p99_added_ms"])]
        out[f"{key[0]} {key[1]}"] = {
            "runs": len(mine), "rto_p50_s": nearest_rank(rtos, 50), "rto_p95_s": nearest_rank(rtos, 95),
            "rto_p99_s": nearest_rank(rtos, 99), "rto_max_s": max(rtos),
            "max_gap_s": max(r["max_gap_s"] for r in mine),
            # Over the drills with writes during the hold to compare (nan: none had any).
            "p99_added_ms_max": max(added, default=float("nan")),
            "p99_added_ms_median": nearest_rank(added, 50),
            "acked": sum(r["acked"] for r in mine), "lost": sum(r["lost"] for r in mine)}
    return out


def table(s: dict) -> str:
    def sec(x):
        return "never" if x == float("inf") else f"{x:.2f} s"

    def ms(x):   # no write during the hold: no p99 to add; a rounded -0.4 reads 0, not -0
        return "–" if math.isnan(x) else f"{round(x) + 0:d}"
    lines = ["| mode | fault | runs | write unavailability p50 / p95 / p99 / max | longest gap | commit p99 added "
             "(median / max) | acknowledged | lost |", "|---|---|---|---|---|---|---|---|"]
    for key, d in s.items():
        mode, fault = key.split(" ", 1)
        lines.append(f"| {mode} | {fault} | {d['runs']} | {sec(d['rto_p50_s'])} / {sec(d['rto_p95_s'])} / "
                     f"{sec(d['rto_p99_s'])} / {sec(d['rto_max_s'])} | {sec(d['max_gap_s'])} | "
                     f"{ms(d['p99_added_ms_median'])} / {ms(d['p99_added_ms_max'])} ms | {d['acked']:,} | {d['lost']} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Every drill's write unavailability as a dot, one row per mode and fault (a run whose writes
    never resumed during the hold is drawn at the hold)."""
    from firebreak.drill.charts import distribution_svg
    series = {}
    for key in dict.fromkeys((r["mode"], r["fault"]) for r in rows):
        series[f"{key[0]}: {key[1]}"] = [HOLD if never_resumed(r) else r["rto_s"]
                                         for r in rows if (r["mode"], r["fault"]) == key]
    path.write_text(distribution_svg(series, "Write unavailability per fault: quorum commit, one synchronous standby, Patroni alone"))


def repeats(text: str, modes: list[str]) -> dict[str, int]:
    """--repeat N for every mode, or MODE=N,... for each its own (a mode left out runs once)."""
    if "=" not in text:
        return {m: int(text) for m in modes}
    given = {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(","))}
    unknown = set(given) - set(modes)
    if unknown:
        raise SystemExit(f"--repeat names {', '.join(sorted(unknown))}, not among --modes {','.join(modes)}")
    return {m: given.get(m, 1) for m in modes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", default="5", help="runs of each fault: N, or MODE=N,... for each mode its own")
    ap.add_argument("--modes", default="quorum,sync,patroni")
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "replication.json"))
    ap.add_argument("--render", metavar="FILE", help="only print the table and write the plot (FILE.svg) of a saved run")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        plot(saved["rows"], Path(args.render).with_suffix(".svg"))
        print(table(summary(saved["rows"])))
        return
    rows = []
    started = datetime.now(timezone.utc)

    def write() -> dict:   # after every drill: a benchmark stopped half-way keeps what it measured
        s = summary(rows)
        doc = {"command": "bench/replication.py " + " ".join(sys.argv[1:]), "started": started.isoformat(),
               "machine": f"{platform.node()} {platform.machine()}, {__import__('os').cpu_count()} cores",
               "hold_s": HOLD, "writers": WRITERS, "rows": rows, "summary": s}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2, default=str))
        return s
    modes = args.modes.split(",")
    runs = repeats(args.repeat, modes)
    for mode in modes:
        lab.down()
        lab.up(agents=MODES[mode]["agents"], replication=MODES[mode]["replication"],
               progress=lambda m: print("  lab:", m, flush=True))
        if MODES[mode].get("failsafe") is False:
            set_failsafe(False)
        try:
            for run in range(runs[mode]):
                for fault in args.faults.split(","):
                    row = {"mode": mode, "run": run + 1, **one_drill(fault)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    write()
        finally:
            lab.down()
    print(table(write()))
    plot(rows, Path(args.out).with_suffix(".svg"))


if __name__ == "__main__":
    main()
