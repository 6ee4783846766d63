"""Claims benchmarks.

Pricing: 1,000,000 reports priced against the outage ledger with the kakao-2022 policy
(target: at most 5 s). Run: .venv/bin/python bench/claims.py --pricing

Intake: reports submitted through the whole stack (every site's Caddy door, the app, a
synchronous commit replicated to another site) by wrk with concurrent connections, beside the
raw insert ceiling of the same table measured with pgbench on the same lab, alternating, in
one run (targets: at least 1,000 reports/s and at least half of pgbench's rate).
Run: .venv/bin/python bench/claims.py --intake   (starts a lab if none is up)

With --flood N, each round also runs the intake while N more connections per door send anonymous
hostile requests (bench/flood.lua); every run records the cores each kind of process used, so a
slowdown can be put down to the component that took the CPU. Every timed run, pgbench's too,
starts once the apps' background verifiers have caught up (no report waiting to be verified).

With --sources N (a netns lab), the intake's connections come from N addresses of the lab's
crowd namespaces (users are many hosts), not all from the host's one; --per-source CAP sets each
door's per-source connection cap for the run (an operator's `settings.door.connections_per_source`)
and puts the default back after.

The front doors: `--door haproxy` starts the lab with HAProxy doors (`lab up --door haproxy`)
instead of Caddy's; `--beside-haproxy` also runs, beside each of the lab's doors and under the
same per-source cap, a door on HAProxy to the same apps (as `--door haproxy` renders it), and
measures through both in every round, alternating which goes first: the two proxies compared on
one lab in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.claims.batch import ReportTable, price_batch  # noqa: E402
from firebreak.claims.ledger import Outage  # noqa: E402
from firebreak.claims.models import REPORTER_KINDS  # noqa: E402
from firebreak.claims.policy import load_policy  # noqa: E402
from firebreak.deploy.components import DOOR_CONNECTIONS_PER_SOURCE  # noqa: E402
from firebreak.lab.layout import NETNS_CROWD, NETNS_OUTSIDER, NETNS_OUTSIDER_ADDR  # noqa: E402

FIRE = 1665814740.0  # 2022-10-15 15:19 KST


def make_reports(n: int, seed: int = 1) -> ReportTable:
    rng = np.random.default_rng(seed)
    services = ["messenger", "taxi", "maps", "pay", "mail", "webtoon"]
    start = FIRE + rng.integers(-6 * 3600, 48 * 3600, n)
    end = start + rng.integers(600, 24 * 3600, n)
    return ReportTable(
        kind=rng.integers(0, len(REPORTER_KINDS), n), service=rng.integers(0, len(services), n), services=services,
        start=start.astype(float), end=end.astype(float),
        claimed=rng.choice([0, 10_000, 120_000, 300_000, 450_000, 2_000_000], n),
        contact=rng.integers(0, n // 2, n), plan_price=rng.choice([0, 3900, 9900], n),
        evidence=rng.integers(0, 2, n), evidence_names=["receipt"])


def ledger() -> list[Outage]:
    # The shape of October 2022: messenger down ~10 h, some services for days, brief blips elsewhere.
    return [Outage("messenger", FIRE, FIRE + 10.5 * 3600), Outage("taxi", FIRE, FIRE + 9 * 3600),
            Outage("maps", FIRE + 600, FIRE + 12 * 3600), Outage("mail", FIRE, FIRE + 30 * 3600),
            Outage("pay", FIRE, FIRE + 5 * 3600), Outage("webtoon", FIRE + 3600, FIRE + 127 * 3600),
            Outage("*", FIRE + 40 * 3600, FIRE + 40 * 3600 + 90)]


def bench_pricing(n: int, repeat: int) -> None:
    policy = load_policy(ROOT / "examples/kakao-2022-policy.yaml")
    table, outages = make_reports(n), ledger()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        priced = price_batch(policy, table, outages)
        times.append(time.perf_counter() - t0)
    s = priced.summary(policy)
    t = statistics.median(times)
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()} numpy {np.__version__}")
    print(f"priced {n:,} reports against {len(outages)} ledger outages: {t:.2f} s median of {repeat} "
          f"({n / t:,.0f} reports/s)  [{'PASS' if t <= 5 else 'FAIL'}: target <= 5 s]")
    print(f"  payout {s['total_payout']:,} won to {s['paid']:,} reports; goodwill {s['goodwill']:,}; "
          f"review {s['needs_review']:,}; flags {s['flagged']}")


PGBENCH_SQL = """INSERT INTO reports (receipt, idempotency_key, reporter_kind, service, window_start, window_end,
 claimed_amount, description, contact, site, evidence)
VALUES ('PB-' || md5(random()::text), md5(random()::text || clock_timestamp()::text), 'channel_shop', 'messenger',
 '2022-10-15T15:30:00+09:00', '2022-10-15T22:00:00+09:00', 250000, 'bench', '010-0000-0000', 'pgbench', '{receipt}');
"""


def stored(dsn: str) -> int:
    import psycopg
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM reports").fetchone()[0]


def settle(dsn: str, timeout: float = 300) -> float:
    """Wait until the apps' background verifiers have verified every report (pgbench's rows and
    the last run's), so each timed run starts from the same state; returns the seconds waited.
    Without it, the run after a quiet second began with the verifiers catching up on tens of
    thousands of reports, and pgbench ran beside them."""
    import psycopg
    t0 = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM reports WHERE status = 'received'").fetchone()[0]:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"the verifiers did not catch up within {timeout:.0f} s")
            time.sleep(0.5)
    return time.monotonic() - t0


def run_pgbench(st: dict, secrets, seconds: int, clients: int) -> float:
    from firebreak.lab import runtime
    primary = st["sites"][st["primary"]]["postgres"]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SQL)
    env = dict(os.environ, PGPASSWORD=secrets.app)
    r = subprocess.run([str(Path(runtime.pg_bin_dir()) / "pgbench"), "-n", "-f", f.name, "-c", str(clients), "-j", "2",
                        "-T", str(seconds), "-h", primary["host"], "-p", str(primary["port"]), "-U", "claims",
                        "claims"], capture_output=True, text=True, env=env, timeout=seconds + 60)
    os.unlink(f.name)
    m = re.search(r"tps = ([0-9.]+)", r.stdout)
    if r.returncode != 0 or not m:
        raise SystemExit(f"pgbench failed:\n{r.stdout}\n{r.stderr}")
    return float(m.group(1))


def cpu_seconds(st: dict) -> dict[str, float]:
    """CPU seconds used so far by each kind of lab process (every site's summed), PostgreSQL's
    processes, this benchmark's finished load generators, and the whole machine."""
    import resource

    import psutil

    out: dict[str, float] = {}
    for s in st["sites"].values():
        for component, p in s["processes"].items():
            try:
                t = psutil.Process(p["pid"]).cpu_times()
            except psutil.Error:
                continue
            out[component] = out.get(component, 0.0) + t.user + t.system
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.info["name"] == "postgres" and p.info["cpu_times"] is not None:
            out["postgres"] = out.get("postgres", 0.0) + p.info["cpu_times"].user + p.info["cpu_times"].system
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["wrk"] = kids.ru_utime + kids.ru_stime
    busy = psutil.cpu_times()
    out["machine"] = sum(busy) - busy.idle - getattr(busy, "iowait", 0.0)
    return out


def intake_sources(sources: int) -> list[list[str]]:
    """The command prefix of each source the intake comes from: the host itself (0), or that many
    of the lab's crowd namespaces, one address each."""
    if sources == 0:
        return [[]]
    return [["ip", "netns", "exec", name] for name, _ in NETNS_CROWD[:sources]]


def run_stack(st: dict, seconds: int, connections: int, doors_used: int, flood: int = 0, sources: int = 0,
              door_urls: list[str] | None = None) -> dict:
    """Intake through the doors, `connections` per door spread over the sources (intake_sources);
    with `flood`, that many more connections per door from one address send anonymous status
    guesses and review actions at the same time (bench/flood.lua). `door_urls`: other doors than
    the lab's (the HAProxy doors beside them)."""
    doors = (door_urls or [s["door"] for s in st["sites"].values()])[:doors_used]
    lua = str(ROOT / "bench" / "intake.lua")
    run_id = f"{time.time_ns():x}"
    prefixes = intake_sources(sources)
    each = connections // len(prefixes)  # main() checked that it divides
    # Each wrk process its own keys and its own contacts (100 blocks of 10,000 apart).
    procs = [subprocess.Popen([*prefix, "wrk", "-t1", f"-c{each}", f"-d{seconds}s", "--timeout", "5s", "-s", lua, d,
                               "--", f"{run_id}-{i}-{j}", str(100 * (i * len(prefixes) + j))],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, d in enumerate(doors) for j, prefix in enumerate(prefixes)]
    # The flood comes from an address of its own, outside every site (the lab's outsider
    # namespace), as from one attacker's host: each door counts connections per source address.
    # In a loopback lab every client is 127.0.0.1 and there is no such limit.
    outside = ["ip", "netns", "exec", NETNS_OUTSIDER] if st["net"] == "netns" else []
    flooders = [subprocess.Popen([*outside, "wrk", "-t1", f"-c{flood}", f"-d{seconds}s", "--timeout", "5s", "-s",
                                  str(ROOT / "bench" / "flood.lua"), d],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for d in doors] if flood else []
    cpu0 = cpu_seconds(st)
    total = {"requests": 0, "errors_status": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "p50_ms": [],
             "p99_ms": []}
    for p in procs:
        text = p.communicate(timeout=seconds + 60)[0]
        m = re.search(r"FIREBREAK (.*)", text)
        if not m:
            raise SystemExit(f"wrk failed:\n{text}")
        fields = dict(kv.split("=") for kv in m.group(1).split())
        for k in ("requests", "errors_status", "connect", "read", "write", "timeout"):
            total[k] += int(fields[k])
        total["p50_ms"].append(float(fields["p50_ms"]))
        total["p99_ms"].append(float(fields["p99_ms"]))
    total["acknowledged"] = total["requests"] - total["errors_status"]
    total["rate"] = total["acknowledged"] / seconds
    total["flood_requests"] = 0
    for p in flooders:
        m = re.search(r"FLOOD requests=(\d+)", p.communicate(timeout=seconds + 60)[0])
        total["flood_requests"] += int(m.group(1)) if m else 0
    total["flood_rate"] = total["flood_requests"] / seconds
    # Where the two cores went (cores used on average): which component the flood takes them from.
    cpu1 = cpu_seconds(st)
    total["cores"] = {k: round((cpu1[k] - cpu0.get(k, 0.0)) / seconds, 2) for k in cpu1}
    return total


SIDE_PORT_OFFSET = 1   # the HAProxy door beside each lab door listens on the door's port + 1


def start_side_doors(st: dict, workdir: Path) -> tuple[list[subprocess.Popen], dict[str, str]]:
    """Beside each site's door, a front door on HAProxy (control/door_haproxy.py, as `lab up
    --door haproxy` runs it, one thread as the lab gives Caddy one core) to the same apps, in the
    site's namespace: both kinds measured on one lab in one run. Stopped by their PIDs."""
    from firebreak.control.door_haproxy import haproxy_config
    from firebreak.lab.layout import PORTS

    sites = list(st["sites"])
    apps = {s: st["sites"][s]["app"] for s in sites}
    procs, urls = [], {}
    for s in sites:
        host = st["sites"][s]["address"]
        port = PORTS["door"] + SIDE_PORT_OFFSET
        cfg = workdir / f"{s}.cfg"
        cfg.write_text(haproxy_config(site=s, sites=sites, apps=apps, listen=f"{host}:{port}",
                                      admin_socket=str(workdir / f"{s}.sock"), threads=1))
        prefix = ["ip", "netns", "exec", f"fb-{s}"] if st["net"] == "netns" else []
        procs.append(subprocess.Popen([*prefix, "haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        urls[s] = f"http://{host}:{port}"
    deadline = time.monotonic() + 10
    import httpx
    while time.monotonic() < deadline:
        try:
            if all(httpx.get(u + "/healthz", timeout=1).status_code == 200 for u in urls.values()):
                return procs, urls
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_side_doors(procs)
    raise SystemExit("the HAProxy doors beside the lab's did not answer within 10 s")


def stop_side_doors(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def bench_intake(rounds: int, seconds: int, connections: int, pg_clients: list[int], out: Path, doors: int,
                 flood: int = 0, sources: int = 0, per_source: int | None = None, door_kind: str = "caddy",
                 beside: bool = False) -> None:
    import shutil
    from firebreak.lab import lab
    from firebreak.lab.state import lab_home, load_secrets

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing; `make setup` installs it (as root), or apt-get install wrk")
    try:
        st = lab.status()
    except Exception:  # noqa: BLE001 - no lab: start one
        lab.up(agents=True, progress=lambda m: print("  lab:", m, flush=True), door=door_kind)
        st = lab.status()
    if st.get("door_kind", "caddy") != door_kind:
        print(f"note: the running lab's doors are {st.get('door_kind', 'caddy')}, not {door_kind}: measuring those")
    secrets = load_secrets(lab_home())
    if (sources or per_source) and st["net"] != "netns":
        raise SystemExit("--sources and --per-source need a netns lab (as root): a loopback lab has one "
                         "source address and no door limit")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; lab {st['net']} mode, "
          f"primary {st['primary']}, load through the doors of: {', '.join(list(st['sites'])[:doors])}"
          + (f"; intake from {sources} addresses" if sources else "")
          + (f"; each door's cap {per_source} connections per source" if per_source else ""))
    side: list[subprocess.Popen] = []
    side_urls: dict[str, str] = {}
    try:
        extra = (st["sites"][next(iter(st["sites"]))]["door"].rsplit(":", 1)[1],) if beside else ()
        extra_ports = tuple(int(p) + SIDE_PORT_OFFSET for p in extra)
        if (per_source or beside) and st["net"] == "netns" and not lab.door_limit(per_source, extra_ports=extra_ports):
            raise SystemExit("--per-source: this lab has no door limit to set (nftables missing?)")
        if beside:
            side, side_urls = start_side_doors(st, Path(tempfile.mkdtemp(prefix="firebreak-side-doors-")))
            print(f"beside each door, HAProxy: {', '.join(side_urls.values())}", flush=True)
        measure_intake(st, secrets, rounds, seconds, connections, pg_clients, out, doors, flood, sources, per_source,
                       side_urls)
    finally:
        stop_side_doors(side)
        if per_source or beside:
            lab.door_limit(None)


def measure_intake(st: dict, secrets, rounds: int, seconds: int, connections: int, pg_clients: list[int], out: Path,
                   doors: int, flood: int, sources: int, per_source: int | None,
                   side_urls: dict[str, str] | None = None) -> None:
    pg_rates, stack_runs = [], []
    lab_kind = st.get("door_kind", "caddy")
    # (name, URLs): the lab's doors, and the HAProxy doors beside them when asked; alternating
    kinds = [(lab_kind, None)] + ([("haproxy beside", list(side_urls.values()))] if side_urls else [])
    for i in range(rounds):
        # The ceiling is pgbench's best: more clients mean bigger group commits, up to the
        # server's connection limit.
        tries = {}
        for c in pg_clients:
            settle(st["postgres_dsn"])
            tries[c] = run_pgbench(st, secrets, seconds, c)
        best = max(tries, key=tries.get)
        rate = tries[best]
        pg_rates.append(rate)
        print(f"  round {i + 1}: pgbench raw insert ceiling {rate:,.0f}/s (best of "
              + ", ".join(f"{c} clients {r:,.0f}/s" for c, r in tries.items()) + ")", flush=True)
        # Quiet first in odd rounds, flooded first in even ones: the second run of a round meets
        # the first one's rows (autovacuum, the verifier's last pass), whichever it is.
        order = ((False, True) if i % 2 == 0 else (True, False)) if flood else (False,)
        for flooded, (kind, urls) in ((f, k) for f in order for k in (kinds if i % 2 == 0 else kinds[::-1])):
            waited = settle(st["postgres_dsn"])
            before = stored(st["postgres_dsn"])
            run = run_stack(st, seconds, connections, doors, flood if flooded else 0, sources, urls)
            run["stored"] = stored(st["postgres_dsn"]) - before
            run["flooded"] = flooded
            run["door"] = kind
            run["settled_after_s"] = round(waited, 1)
            stack_runs.append(run)
            print(f"  round {i + 1}: through doors ({kind})+app+sync replication{' while flooded' if flooded else ''} "
                  f"{run['rate']:,.0f} reports/s ({run['acknowledged']:,} acknowledged, {run['stored']:,} stored, "
                  f"{run['errors_status']} non-2xx, p50 {max(run['p50_ms']):.0f} ms, p99 {max(run['p99_ms']):.0f} ms"
                  + (f"; flood {run['flood_rate']:,.0f} anonymous requests/s" if flooded else "") + ")", flush=True)
            print("    cores: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(run["cores"].items(), key=lambda kv: -kv[1])),
                  flush=True)
    pg = statistics.median(pg_rates)
    for kind, _ in kinds[1:]:
        mine = [r for r in stack_runs if r["door"] == kind]
        quiet = statistics.median(r["rate"] for r in mine if not r["flooded"])
        print(f"{kind}: quiet {quiet:,.0f} reports/s = {quiet / pg:.0%} of pgbench"
              + (f", flooded {statistics.median(r['rate'] for r in mine if r['flooded']):,.0f}/s = "
                 f"{statistics.median(r['rate'] for r in mine if r['flooded']) / pg:.0%}" if flood else ""))
    stack_runs_all = stack_runs
    stack_runs = [r for r in stack_runs if r["door"] == lab_kind]
    stack = statistics.median(r["rate"] for r in stack_runs if not r["flooded"])
    if flood:
        flooded = statistics.median(r["rate"] for r in stack_runs if r["flooded"])
        print(f"flooded: {flooded:,.0f} reports/s = {flooded / pg:.0%} of pgbench (quiet {stack / pg:.0%})  "
              f"[{'PASS' if flooded >= 0.5 * pg else 'FAIL'}: >= 50% of pgbench]")
    lost = sum(max(0, r["acknowledged"] - r["stored"]) for r in stack_runs_all)
    ok = stack >= 1000 and stack >= 0.5 * pg and lost == 0
    print(f"intake ({lab_kind} doors): {stack:,.0f} reports/s through the stack vs pgbench ceiling {pg:,.0f}/s = {stack / pg:.0%} "
          f"(median of {rounds}); acknowledged but not stored: {lost}  "
          f"[{'PASS' if ok else 'FAIL'}: >= 1,000/s and >= 50% of pgbench, 0 lost]")
    out.mkdir(parents=True, exist_ok=True)
    name = f"claims-intake-{doors}door{'s' if doors > 1 else ''}" + (
        ("-flood" if flood == 16 else f"-flood{flood}") if flood else "") + (
        f"-{sources}sources" if sources else "") + (f"-cap{per_source}" if per_source else "") + (
        "-haproxy" if lab_kind == "haproxy" else "") + ("-vs-haproxy" if side_urls else "")
    (out / f"{name}.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "net": st["net"], "seconds": seconds, "doors": doors, "wrk_connections_per_door": connections, "pgbench_clients": pg_clients,
        "flood_connections_per_door": flood,
        "flood_from": (NETNS_OUTSIDER_ADDR if st["net"] == "netns" else "127.0.0.1") if flood else None,
        "door_connections_per_source": (per_source or DOOR_CONNECTIONS_PER_SOURCE) if st["net"] == "netns" else None,
        "intake_from": [addr for _, addr in NETNS_CROWD[:sources]] if sources else "the host (10.77.0.1 or 127.0.0.1)",
        "door_kind": lab_kind, "beside": "haproxy" if side_urls else None,
        "pgbench": pg_rates, "stack": stack_runs_all, "median_pgbench": pg, "median_stack": stack, "lost": lost,
    }, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pricing", action="store_true", help="the pricing benchmark (no lab needed)")
    ap.add_argument("--intake", action="store_true", help="intake through the lab vs pgbench")
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64, help="wrk connections per door")
    ap.add_argument("--pg-clients", type=lambda v: [int(x) for x in v.split(",")], default=[48, 96],
                    help="pgbench client counts to try each round; the best is the ceiling")
    ap.add_argument("--doors", type=int, default=3, help="send load through this many sites' doors")
    ap.add_argument("--flood", type=int, default=0, help="also run each round flooded: this many connections per "
                                                          "door of anonymous status guesses and review actions")
    ap.add_argument("--sources", type=int, default=0, help="intake from this many addresses (the lab's crowd "
                                                            "namespaces; 0: the host)")
    ap.add_argument("--per-source", type=int, default=None, help="each door's per-source connection cap for the run")
    ap.add_argument("--door", choices=("caddy", "haproxy"), default="haproxy",
                    help="the lab's front doors, when the benchmark starts the lab")
    ap.add_argument("--beside-haproxy", action="store_true",
                    help="also measure, in the same rounds, through an HAProxy door beside each lab door")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    args = ap.parse_args()
    if not 0 <= args.sources <= len(NETNS_CROWD):
        ap.error(f"--sources: 0 (the host) to {len(NETNS_CROWD)} (the lab's crowd addresses), not {args.sources}")
    if args.sources and args.connections % args.sources:
        ap.error(f"--connections {args.connections} does not divide among {args.sources} sources")
    if args.per_source is not None and args.per_source < 1:
        ap.error(f"--per-source: a cap of 1 or more, not {args.per_source}")
    if args.pricing or not args.intake:
        bench_pricing(args.n, args.repeat)
    if args.intake or not args.pricing:
        bench_intake(args.rounds, args.seconds, args.connections, args.pg_clients, Path(args.out), args.doors,
                     args.flood, args.sources, args.per_source, args.door, args.beside_haproxy)


if __name__ == "__main__":
    main()
