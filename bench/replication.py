"""Quorum commit vs plain synchronous mode vs Patroni alone, in one run: what losing a site costs
an ordinary client (psycopg, libpq defaults, reconnect on error) writing through a spared site's
database door, and beside it the reference service's own clients through the same site's front
door, when the lost site holds the primary and when it holds a standby.

Modes, each on a fresh lab:
  quorum   `lab up --replication quorum`, agents on: Patroni's synchronous_mode: quorum
           (ANY 1 of the two other sites' standbys);
  sync     `lab up`, agents on: synchronous_mode with one named standby (today's default);
  patroni  `lab up --no-agents`: synchronous_mode, Patroni and HAProxy's own health checks alone
           (the usual recipe).

Faults (each held HOLD seconds, healed, the lab healthy and settled again before the next):
power-cut / isolate of the primary's site, power-cut / isolate of a standby's site. Per fault:
write unavailability (first acknowledged write after the fault), longest write gap during the
hold, commit latency p99 during the hold minus p99 over the 10 s before, the reference service's
write unavailability, acknowledged, lost (both clients).

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
import os
import platform
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import checks  # noqa: E402
from firebreak.drill.report import buckets  # noqa: E402
from firebreak.drill.workload import ORDINARY_TABLE, History, OrdinaryWriter, Writer, prepare_ordinary_table  # noqa: E402
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
# etcd away for a minute while every database server is healthy (Patroni's failsafe_mode). Two of
# three: the primary's own member kept, the harder case (a member that accepts connections and
# serves nothing). Run with --faults etcd-all,etcd-stop,etcd-quorum,etcd-cut.
ETCD_FAULTS = {"etcd-all": "every etcd member paused (SIGSTOP: connections hang)",
               "etcd-stop": "every etcd member stopped (killed: connections refused), started again after",
               "etcd-quorum": "two of three sites' etcd members paused: no quorum",
               "etcd-cut": "two of three sites' etcd members cut off at the network: no quorum"}
ETCD_HOLD = 60.0
ETCD_AFTER = 15.0
AGENTS_PATIENCE = 120.0   # how long after etcd's return the agents may take to agree, before "never"
PRIMARY_ROLES = ("primary", "master")
# The reference service's writes, by the idempotency key its clients send.
WEB_KEYS = "SELECT idempotency_key FROM reports WHERE idempotency_key IS NOT NULL"


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


def stored_keys(dsn: str, patience: float = 60.0, query: str = f"SELECT key FROM {ORDINARY_TABLE}") -> set[str]:
    """The ordinary client's stored keys, read from the primary. A lab that has just read healthy
    may still be restarting a member (Patroni alone, after its old primary came back: "the
    database system is shutting down", the others read-only for a moment): asked again."""
    import psycopg
    deadline = time.monotonic() + patience
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                return {r[0] for r in conn.execute(query)}
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def standby_of(st: dict) -> str:
    return next(n for n, s in st["sites"].items() if s["postgres"]["role"] in ("sync_standby", "quorum_standby"))


def etcd_off(fault: str, site: str) -> None:
    if fault in ("etcd-all", "etcd-quorum"):
        lab.pause(site, "etcd")
    elif fault == "etcd-stop":
        lab.stop_component(site, "etcd")
    else:
        lab.cut_etcd(site)


def etcd_on(fault: str, site: str) -> None:
    if fault in ("etcd-all", "etcd-quorum"):
        lab.resume(site)
    elif fault == "etcd-stop":
        lab.start_component(site, "etcd")
    else:
        lab.unisolate(site)


def both_clients(st: dict, spared: str, history: History, stop: threading.Event) -> list[threading.Thread]:
    """The ordinary client's writers through the spared site's database door and, beside them,
    the reference service's own clients through the same site's front door, one history."""
    return ([OrdinaryWriter(spared, st["db_door_dsns"][spared], history, stop, interval=0.01) for _ in range(WRITERS)]
            + [Writer({spared: st["sites"][spared]["door"]}, history, stop, seed=i) for i in range(WRITERS)])


class RoleWatch(threading.Thread):
    """Every member's role and timeline as its Patroni reports them (GET /patroni, twice a second):
    a demotion or a promotion seen by Patroni itself, not inferred from the writes (a primary
    demoted and promoted again is the same primary after, on a later timeline)."""

    def __init__(self, urls: dict[str, str], stop: threading.Event):
        super().__init__(daemon=True)
        self.urls, self.stop_event = urls, stop
        self.seen: list[tuple[float, str, str | None, int | None]] = []   # (monotonic, site, role, timeline)

    def run(self) -> None:
        import httpx
        with httpx.Client(timeout=0.4) as client:
            while not self.stop_event.is_set():
                t = time.monotonic()
                for site, url in self.urls.items():
                    try:
                        doc = client.get(url.rstrip("/") + "/patroni").json()
                        self.seen.append((t, site, doc.get("role"), doc.get("timeline")))
                    except (httpx.HTTPError, ValueError):
                        self.seen.append((t, site, None, None))
                self.stop_event.wait(0.5)


def patroni_roles(seen: list[tuple[float, str, str | None, int | None]], primary: str, since: float) -> dict:
    """What Patroni reported from `since` on: seconds the old primary read as anything but
    primary (from each such reading to the next reading of it; unanswered reads are no evidence
    either way: a busy REST API is no demotion), other members that read as primary, and the
    timelines any member read as primary was on. Pure."""
    mine = sorted((t, role) for t, site, role, _ in seen if site == primary and t >= since and role is not None)
    demoted = sum(b[0] - a[0] for a, b in zip(mine, mine[1:]) if a[1] not in PRIMARY_ROLES)
    after = [(site, role, tl) for t, site, role, tl in seen if t >= since]
    return {"demoted_s": round(demoted, 1),
            "promoted": sorted({site for site, role, _ in after if site != primary and role in PRIMARY_ROLES}),
            "timelines": sorted({tl for _, role, tl in after if tl is not None and role in PRIMARY_ROLES})}


def etcd_drill(fault: str) -> dict:
    """etcd away for ETCD_HOLD s, then back for ETCD_AFTER s: writes acknowledged during it, the
    longest gap, what Patroni reported (a demotion, a promotion, a new timeline), how long the
    agents took to agree on a coordinator again, lost."""
    st = wait_healthy()
    primary = st["primary"]
    spared = next(n for n in st["sites"] if n != primary)
    victims = list(st["sites"]) if fault in ("etcd-all", "etcd-stop") else [n for n in st["sites"] if n != primary]
    prepare_ordinary_table(st["postgres_dsn"])
    history, stop = History(), threading.Event()
    writers = both_clients(st, spared, history, stop)
    watch = RoleWatch({n: s["patroni"] for n, s in st["sites"].items()}, stop)
    for w in writers + [watch]:
        w.start()
    time.sleep(BEFORE)
    at = time.monotonic()
    try:
        for s in victims:
            etcd_off(fault, s)
        time.sleep(ETCD_HOLD)
    finally:
        for s in victims:
            etcd_on(fault, s)
    back = time.monotonic()
    consoles = {n: s["console"] for n, s in st["sites"].items() if s.get("console")}
    agents_back = None   # with agents: seconds until they agree on a coordinator again; None, never (120 s)
    while consoles and agents_back is None and time.monotonic() < back + AGENTS_PATIENCE:
        if lab.settled_coordinator(consoles):
            agents_back = round(time.monotonic() - back, 2)
        elif time.monotonic() >= back + ETCD_AFTER and not stop.is_set():
            stop.set()   # the writers' time is up; keep waiting for the agents
        time.sleep(0.25)
    time.sleep(max(0.0, back + ETCD_AFTER - time.monotonic()))
    stop.set()
    for w in writers + [watch]:
        w.join(timeout=10)
    after = wait_healthy()
    ops = list(history.ops)
    acked = checks.acked(ops, "sql")
    stored = stored_keys(after["postgres_dsn"])
    web_stored = stored_keys(after["postgres_dsn"], query=WEB_KEYS)
    end = at + ETCD_HOLD + ETCD_AFTER
    seconds = int(BEFORE + ETCD_HOLD + ETCD_AFTER)
    per_second = buckets(ops, at - BEFORE, seconds, "sql").get(spared, [(0, 0)] * seconds)
    roles = patroni_roles(watch.seen, primary, at)
    return {"fault": fault, "victim": ",".join(victims), "via": spared, "rto_s": 0.0,
            "max_gap_s": round(checks.max_write_gap(ops, at, end, "sql"), 3),
            "acked_during": len([o for o in acked if at <= o.complete <= at + ETCD_HOLD]),
            "p99_before_ms": 0.0, "p99_during_ms": 0.0, "p99_added_ms": 0.0,
            "acked": len(acked), "lost": len(checks.lost_writes(ops, stored, "sql")),
            "servers": sorted({o.primary for o in acked if o.complete >= at}),
            "web_acked_during": len([o for o in checks.acked(ops) if at <= o.complete <= at + ETCD_HOLD]),
            "web_max_gap_s": round(checks.max_write_gap(ops, at, end), 3),
            "web_lost": len(checks.lost_writes(ops, web_stored)),
            **roles, "agents_back_s": agents_back, "primary_after": after["primary"],
            "demoted": after["primary"] != primary or roles["demoted_s"] > 0,
            "per_second": per_second}


def one_drill(fault: str) -> dict:
    if fault in ETCD_FAULTS:
        return etcd_drill(fault)
    st = wait_healthy()
    kind, role = fault.split()
    victim = st["primary"] if role == "primary" else standby_of(st)
    spared = next(n for n in st["sites"] if n not in (victim, st["primary"])) if role == "primary" else st["primary"]
    prepare_ordinary_table(st["postgres_dsn"])
    history, stop = History(), threading.Event()
    writers = both_clients(st, spared, history, stop)
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
    web_stored = stored_keys(after["postgres_dsn"], query=WEB_KEYS)
    rto = checks.write_rto(ops, at, "sql", until=at + HOLD)
    web_rto = checks.write_rto(ops, at, until=at + HOLD)
    return {"fault": fault, "victim": victim, "via": spared, "rto_s": None if rto is None else round(rto, 3),
            "max_gap_s": round(checks.max_write_gap(ops, at, at + HOLD, "sql"), 3),
            "p99_before_ms": round(before_p99, 1), "p99_during_ms": round(during_p99, 1),
            "p99_added_ms": round(during_p99 - before_p99, 1),
            "acked": len(acked), "lost": len(checks.lost_writes(ops, stored, "sql")),
            "web_rto_s": None if web_rto is None else round(web_rto, 3),
            "web_max_gap_s": round(checks.max_write_gap(ops, at, at + HOLD), 3),
            "web_acked": len(checks.acked(ops)), "web_lost": len(checks.lost_writes(ops, web_stored)),
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


def never_resumed(row: dict, client: str = "") -> bool:
    """Whether a drill's writes never flowed again during the hold (client "web_": the reference
    service's). Rows measured before write_rto took the hold's end (runs 1-4) read the one write
    that slipped in as the fault landed as their unavailability (Patroni alone: "0.00 s" and then
    nothing for 12 s): a longest gap that takes all but the settle second of the hold says what
    that write hid."""
    return row[f"{client}rto_s"] is None or row[f"{client}max_gap_s"] >= HOLD - checks.SETTLE


def summary(rows: list[dict]) -> dict:
    out: dict = {}
    for key in dict.fromkeys((r["mode"], r["fault"]) for r in rows):
        mine = [r for r in rows if (r["mode"], r["fault"]) == key]
        rtos = [float("inf") if never_resumed(r) else r["rto_s"] for r in mine]
        added = [r["p99_added_ms"] for r in mine if not math.isnan(r["p99_added_ms"])]
        # Rows from before the reference service wrote beside the ordinary client (runs 1-4) have none.
        web = [float("inf") if never_resumed(r, "web_") else r["web_rto_s"] for r in mine if "web_rto_s" in r]
        out[f"{key[0]} {key[1]}"] = {
            "runs": len(mine), "rto_p50_s": nearest_rank(rtos, 50), "rto_p95_s": nearest_rank(rtos, 95),
            "rto_p99_s": nearest_rank(rtos, 99), "rto_max_s": max(rtos),
            "max_gap_s": max(r["max_gap_s"] for r in mine),
            # Over the drills with writes during the hold to compare (nan: none had any).
            "p99_added_ms_max": max(added, default=float("nan")),
            "p99_added_ms_median": nearest_rank(added, 50),
            "acked": sum(r["acked"] for r in mine), "lost": sum(r["lost"] for r in mine),
            "web_rto_p50_s": nearest_rank(web, 50), "web_rto_max_s": max(web, default=float("nan")),
            "web_acked": sum(r.get("web_acked", 0) for r in mine), "web_lost": sum(r.get("web_lost", 0) for r in mine)}
    return out


def table(s: dict) -> str:
    def sec(x):
        return "–" if math.isnan(x) else "never" if x == float("inf") else f"{x:.2f} s"

    def ms(x):   # no write during the hold: no p99 to add; a rounded -0.4 reads 0, not -0
        return "–" if math.isnan(x) else f"{round(x) + 0:d}"
    lines = ["| mode | fault | runs | write unavailability p50 / p95 / p99 / max | longest gap | commit p99 added "
             "(median / max) | reference service: unavailability p50 / max | acknowledged (ordinary + reference) | lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, d in s.items():
        mode, fault = key.split(" ", 1)
        web = d.get("web_rto_p50_s", float("nan"))
        acked = f"{d['acked']:,}" + ("" if math.isnan(web) else f" + {d['web_acked']:,}")
        lines.append(f"| {mode} | {fault} | {d['runs']} | {sec(d['rto_p50_s'])} / {sec(d['rto_p95_s'])} / "
                     f"{sec(d['rto_p99_s'])} / {sec(d['rto_max_s'])} | {sec(d['max_gap_s'])} | "
                     f"{ms(d['p99_added_ms_median'])} / {ms(d['p99_added_ms_max'])} ms | "
                     f"{sec(web)} / {sec(d.get('web_rto_max_s', float('nan')))} | {acked} | "
                     f"{d['lost'] + d.get('web_lost', 0)} |")
    return "\n".join(lines)


def etcd_table(rows: list[dict]) -> str:
    """One line per etcd drill: what the minute without etcd cost and what Patroni did."""
    lines = [f"| mode | fault | ordinary client: writes in the {ETCD_HOLD:.0f} s / longest gap | reference service: "
             "writes / longest gap | primary demoted (s, as Patroni reported) | another member promoted | timelines | "
             "agents agree again after | lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["fault"] not in ETCD_FAULTS:
            continue
        back = "–" if r["mode"] == "patroni" else "never" if r.get("agents_back_s") is None else f"{r['agents_back_s']:.1f} s"
        web = (f"{r['web_acked_during']:,} / {r['web_max_gap_s']:.2f} s" if "web_acked_during" in r else "–")
        lines.append(f"| {r['mode']} | {r['fault']} | {r['acked_during']:,} / {r['max_gap_s']:.2f} s | {web} | "
                     f"{r.get('demoted_s', '?')} | {', '.join(r.get('promoted', [])) or 'none'} | "
                     f"{', '.join(str(t) for t in r.get('timelines', []))} | {back} | "
                     f"{r['lost'] + r.get('web_lost', 0)} |")
    return "\n".join(lines)


def plot_etcd(rows: list[dict], base: Path) -> list[Path]:
    """Each etcd drill's writes per second, etcd's going and return marked: BASE-MODE-FAULT.svg."""
    from firebreak.drill.charts import timeline_svg
    out = []
    for r in rows:
        if r["fault"] not in ETCD_FAULTS or "per_second" not in r or r["run"] != 1:
            continue
        path = base.with_name(f"{base.stem}-{r['mode']}-{r['fault']}.svg")
        path.write_text(timeline_svg({f"ordinary client via {r['via']}": [tuple(b) for b in r["per_second"]]},
                                     [(BEFORE, "etcd away", "#b00020"), (BEFORE + ETCD_HOLD, "etcd back", "#1b7f3b")],
                                     len(r["per_second"]), f"{r['mode']}: {ETCD_FAULTS[r['fault']]}"))
        out.append(path)
    return out


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


def report(rows: list[dict], out: Path) -> None:
    """The tables for docs/BENCHMARKS.md and the plots beside the JSON: the site faults' summary
    and dots, the etcd drills' own table and timelines."""
    site = [r for r in rows if r["fault"] not in ETCD_FAULTS]
    if site:
        print(table(summary(site)))
        plot(site, out.with_suffix(".svg"))
    if len(site) < len(rows):
        print(etcd_table(rows))
        plot_etcd(rows, out)


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
        report(saved["rows"], Path(args.render))
        return
    rows = []
    started = datetime.now(timezone.utc)

    def write() -> dict:   # after every drill: a benchmark stopped half-way keeps what it measured
        s = summary([r for r in rows if r["fault"] not in ETCD_FAULTS])
        doc = {"command": "bench/replication.py " + " ".join(sys.argv[1:]), "started": started.isoformat(),
               "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
               "hold_s": HOLD, "etcd_hold_s": ETCD_HOLD, "writers": WRITERS, "rows": rows, "summary": s}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2, default=str))
        return s
    modes = args.modes.split(",")
    for name, given, known in (("--modes", modes, MODES), ("--faults", args.faults.split(","), (*FAULTS, *ETCD_FAULTS))):
        unknown = [g for g in given if g not in known]
        if unknown:
            ap.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if "etcd-cut" in args.faults.split(",") and os.geteuid() != 0:
        ap.error("--faults etcd-cut: cutting etcd members off needs the netns lab, which needs root")
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
    write()
    report(rows, Path(args.out))


if __name__ == "__main__":
    main()
