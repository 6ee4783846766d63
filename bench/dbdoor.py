"""Ordinary database clients through a silent power cut of the primary's site, three ways at once.

Each round cuts the primary's site (its address goes silent: a real power cut, netns mode) while
three ordinary clients write (bench/ordinary_client.py: psycopg with libpq's defaults, autocommit
inserts, reconnect on error, nothing else), each a fresh process per round:

1. door:      through a surviving site's Firebreak database door (one host and port);
2. multihost: straight to the hosts, a multi-host DSN with target_session_attrs=read-write;
3. haproxy:   through HAProxy configured by the usual Patroni recipe, checking each member's REST
              API for /primary (inter 3 s, fall 3, rise 2, on-marked-down shutdown-sessions:
              the values of Patroni's own HAProxy example), run by this benchmark on the host.

All three share the cut, so they face the same failover (Firebreak's agents run in the lab). A
client still not writing CAP seconds after the cut is recorded as capped and killed (a libpq
client on a silent socket would wait for TCP to give up, minutes). After the rounds every
acknowledged key is looked up in the database: lost writes. And a write acknowledged by the old
primary after the new one took its first write would be two primaries: counted too.

Then pgbench, a client nobody here wrote, through the door during one more cut (PostgreSQL 15's
pgbench has no reconnect option: a client whose connection breaks aborts, so the question is
whether it gets an error at once and whether running it again works), beside a pgbench on the
multi-host DSN.

Run: .venv/bin/python bench/dbdoor.py --rounds 20 [--keep-lab]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.control.dbdoor import PATRONI_RECIPE, haproxy_config  # noqa: E402
from firebreak.drill.charts import distribution_svg, percentile  # noqa: E402
from firebreak.drill.runner import wait_healthy  # noqa: E402
from firebreak.lab import lab  # noqa: E402
from firebreak.lab.layout import PORTS  # noqa: E402
from firebreak.lab.runtime import haproxy_binary  # noqa: E402
from firebreak.lab.state import lab_home, load_secrets  # noqa: E402

KINDS = {"door": "Firebreak database door", "multihost": "multi-host DSN", "haproxy": "HAProxy, Patroni recipe"}
CLIENT = ROOT / "bench" / "ordinary_client.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_recipe_haproxy(st: dict, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    servers = {n: (s["address"], s["postgres"]["port"], PORTS["patroni"]) for n, s in st["sites"].items()}
    cfg = workdir / "recipe.cfg"
    cfg.write_text(haproxy_config(name="the usual Patroni recipe", bind_host="127.0.0.1", rw_port=port, ro_port=None,
                                  servers=servers, admin_socket=None, recipe=PATRONI_RECIPE))
    proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "recipe.log", "ab"))
    return proc, port


def dsns(st: dict, recipe_port: int, door_site: str) -> dict[str, str]:
    secrets = load_secrets(lab_home())
    hosts = ",".join(f"{s['address']}:{s['postgres']['port']}" for s in st["sites"].values())
    return {
        "door": st["db_door_dsns"][door_site],
        "multihost": f"postgresql://claims:{secrets.app}@{hosts}/claims?target_session_attrs=read-write",
        "haproxy": f"postgresql://claims:{secrets.app}@127.0.0.1:{recipe_port}/claims",
    }


def parse(path: Path) -> list[tuple[float, str, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((float(parts[0]), parts[1], parts[2], parts[3]))
    return out


def measure(lines: list[tuple[float, str, str, str]], cut: float, old_addr: str, first_new: float | None) -> dict:
    """One client's round: writes are available again at the first acknowledgement by a server
    other than the old primary (the old primary may still acknowledge for the few milliseconds
    the cut itself takes; those writes were made before it died)."""
    resumed = [t for t, what, _, srv in lines if what == "ok" and t > cut and srv != old_addr]
    return {
        "unavailable_s": round(min(resumed) - cut, 3) if resumed else None,  # None: still not writing at the cap
        "acked": [key for _, what, key, _ in lines if what == "ok"],
        "errors": sum(1 for _, what, _, _ in lines if what == "err"),
        "old_primary_acks_after_promotion": sum(1 for t, what, _, srv in lines if what == "ok" and srv == old_addr
                                                and first_new is not None and t >= first_new),
    }


def one_round(i: int, recipe_port: int, cap: float, workdir: Path) -> dict:
    st = wait_healthy(120)
    victim = st["primary"]
    sync = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "sync_standby")
    third = next(n for n in st["sites"] if n not in (victim, sync))
    door_site = (third, sync)[i % 2]  # both kinds of survivor, alternately
    logs = {k: workdir / f"round{i:02d}-{k}.log" for k in KINDS}
    clients = {k: subprocess.Popen([sys.executable, str(CLIENT), dsn, k], stdout=open(logs[k], "w"),
                                   stderr=subprocess.DEVNULL, start_new_session=True)
               for k, dsn in dsns(st, recipe_port, door_site).items()}
    try:
        time.sleep(3.0)
        cut = time.time()
        lab.power_off(victim)

        old = st["sites"][victim]["address"]

        def resumed(kind: str) -> bool:
            return any(t > cut and what == "ok" and srv != old for t, what, _, srv in parse(logs[kind]))
        deadline = time.time() + cap
        while time.time() < deadline and not all(resumed(k) for k in KINDS):
            time.sleep(0.2)
    finally:
        for p in clients.values():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    old_addr = st["sites"][victim]["address"]
    result = {"round": i + 1, "victim": victim, "door_site": door_site, "cut": cut,
              "silenced": lab.status()["sites"][victim]["silenced"], "kinds": {}}
    lines = {k: parse(logs[k]) for k in KINDS}
    first_new = min((t for ls in lines.values() for t, what, _, srv in ls if what == "ok" and t > cut and srv != old_addr),
                    default=None)
    for k, ls in lines.items():
        result["kinds"][k] = measure(ls, cut, old_addr, first_new)
    lab.power_on(victim)
    wait_healthy(150)
    return result


def pgbench_round(recipe_port: int, cap: float, workdir: Path) -> dict:
    """pgbench through a surviving door and on the multi-host DSN, during one cut."""
    st = wait_healthy(120)
    victim = st["primary"]
    door_site = next(n for n in st["sites"] if n != victim)
    targets = dsns(st, recipe_port, door_site)
    script = workdir / "insert.sql"
    script.write_text("INSERT INTO bench_door_writes (key, kind) VALUES (md5(random()::text || clock_timestamp()), 'pgbench');\n")

    def pgbench(dsn: str, seconds: int, log: Path) -> subprocess.Popen:
        return subprocess.Popen(["pgbench", "-n", "-c", "2", "-T", str(seconds), "-f", str(script), dsn],
                                stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    runs = {k: pgbench(targets[k], 60, workdir / f"pgbench-{k}.log") for k in ("door", "multihost")}
    time.sleep(3.0)
    cut = time.time()
    lab.power_off(victim)
    ended: dict[str, float | None] = {k: None for k in runs}
    # As a person would: once the door's pgbench stops, run it again at once, in a loop, until a
    # run goes through; meanwhile the multi-host one is given until the cap.
    rerun: subprocess.Popen | None = None
    rerun_started, rerun_ok_at, reruns, last_out = 0.0, None, 0, ""
    deadline = time.time() + cap
    while time.time() < deadline and (ended["multihost"] is None or (ended["door"] is not None and rerun_ok_at is None)):
        for k, p in runs.items():
            if ended[k] is None and p.poll() is not None:
                ended[k] = time.time()
        if ended["door"] is not None and rerun_ok_at is None:
            if rerun is not None and rerun.poll() is not None:
                last_out = rerun.communicate()[0]
                if rerun.returncode == 0:
                    rerun_ok_at = rerun_started
                rerun = None
            if rerun is None and rerun_ok_at is None:
                reruns += 1
                rerun_started = time.time()
                rerun = subprocess.Popen(["pgbench", "-n", "-c", "2", "-T", "3", "-f", str(script), targets["door"]],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.05)
    for p in [*runs.values(), *([rerun] if rerun is not None else [])]:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL) if p in runs.values() else p.kill()
            p.wait()
    processed = re.search(r"number of transactions actually processed: (\d+)", last_out)
    failed = re.search(r"number of failed transactions: (\d+)", last_out)
    door_log = (workdir / "pgbench-door.log").read_text()
    result = {
        "door_site": door_site, "victim": victim,
        "door": {"ended_after_cut_s": round(ended["door"] - cut, 3) if ended["door"] else None,
                 "exit_message": next((ln for ln in door_log.splitlines() if "abort" in ln or "error" in ln), ""),
                 "reruns_until_ok": reruns, "ok_run_started_after_cut_s": round(rerun_ok_at - cut, 3) if rerun_ok_at else None,
                 "ok_run_transactions": int(processed.group(1)) if processed else 0,
                 "ok_run_failed": int(failed.group(1)) if failed else None},
        "multihost": {"ended_after_cut_s": round(ended["multihost"] - cut, 3) if ended["multihost"] else None,
                      "capped_at_s": cap},
    }
    lab.power_on(victim)
    wait_healthy(150)
    return result


def summary(values: list[float | None], cap: float) -> dict:
    got = [v for v in values if v is not None]
    capped = len(values) - len(got)
    full = got + [cap] * capped  # a capped client waited at least the cap
    return {"n": len(values), "capped": capped, "p50": round(statistics.median(full), 3),
            "p95": round(percentile(full, 95), 3), "max": round(max(full), 3),
            "max_is_lower_bound": capped > 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20, help="power cuts of the primary's site")
    ap.add_argument("--cap", type=float, default=30.0, help="seconds a client may stay stuck before it is killed")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    ap.add_argument("--keep-lab", action="store_true", help="use a running lab and leave it up")
    args = ap.parse_args()
    if not args.keep_lab:
        lab.down()
        lab.up(agents=True, progress=lambda m: print("  lab:", m, flush=True))
    st = wait_healthy(120)
    if st["net"] != "netns":
        print("note: loopback mode: a cut site refuses connections instead of going silent; run as root for "
              "a real (silent) power cut", flush=True)
    with psycopg.connect(st["postgres_dsn"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_door_writes (key text PRIMARY KEY, kind text, "
                     "at timestamptz DEFAULT now())")
    workdir = Path(tempfile.mkdtemp(prefix="fb-dbdoor-"))
    recipe, recipe_port = start_recipe_haproxy(st, workdir)
    rounds, pgb = [], None
    try:
        for i in range(args.rounds):
            r = one_round(i, recipe_port, args.cap, workdir)
            rounds.append(r)
            print(f"round {i + 1:>2} cut {r['victim']:<8} door in {r['door_site']:<8} " + "  ".join(
                f"{k} {'>%g' % args.cap if v['unavailable_s'] is None else '%.2f' % v['unavailable_s']} s"
                for k, v in r["kinds"].items()), flush=True)
        pgb = pgbench_round(recipe_port, args.cap, workdir)
        print("pgbench:", json.dumps(pgb), flush=True)
        with psycopg.connect(lab.status()["postgres_dsn"]) as conn:
            stored = {row[0] for row in conn.execute("SELECT key FROM bench_door_writes")}
    finally:
        recipe.terminate()
        recipe.wait(5)
        if not args.keep_lab:
            lab.down()
    per_kind = {}
    for k in KINDS:
        acked = [key for r in rounds for key in r["kinds"][k]["acked"]]
        per_kind[k] = {
            "label": KINDS[k],
            "write_unavailability_s": summary([r["kinds"][k]["unavailable_s"] for r in rounds], args.cap),
            "acked_writes": len(acked), "acked_lost": len(set(acked) - stored),
            "old_primary_acks_after_promotion": sum(r["kinds"][k]["old_primary_acks_after_promotion"] for r in rounds),
        }
    for r in rounds:
        for v in r["kinds"].values():
            v["acked"] = len(v["acked"])
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "bench/dbdoor.py " + " ".join(sys.argv[1:]),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "net": st["net"], "rounds": args.rounds, "cap_s": args.cap,
        "recipe": {"inter_ms": PATRONI_RECIPE.inter_ms, "fall": PATRONI_RECIPE.fall, "rise": PATRONI_RECIPE.rise,
                   "check": "OPTIONS /primary on each member's Patroni REST API",
                   "on_marked_down": "shutdown-sessions"},
        "summary": per_kind, "pgbench": pgb, "results": rounds,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dbdoor.json").write_text(json.dumps(report, indent=2))
    series = {KINDS[k] + (f" (capped at {args.cap:g} s)" if per_kind[k]["write_unavailability_s"]["capped"] else ""):
              [r["kinds"][k]["unavailable_s"] if r["kinds"][k]["unavailable_s"] is not None else args.cap
               for r in rounds] for k in reversed(list(KINDS))}
    (out / "dbdoor.svg").write_text(distribution_svg(
        series, f"Ordinary clients' write unavailability after a silent power cut ({args.rounds} cuts)"))
    print(json.dumps(per_kind, indent=2))
    print(f"wrote {out / 'dbdoor.json'} and {out / 'dbdoor.svg'}")


if __name__ == "__main__":
    main()
