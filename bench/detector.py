"""What a faster detector costs: for each set of detector settings (probe interval, probe timeout,
window, freshness), the write unavailability after silent power cuts of the primary's site, and
the false dead verdicts and failovers over a stretch of time with no fault at all but the machine
under stress, in one run, on one lab.

Each setting is applied as an operator would: every site's agent.yml is rewritten and the agents
restarted one site at a time. Its running cost comes first: the cores the agents and etcd use over
--idle-seconds with no load and no fault (faster probes and views are more work for both, taken
from whatever else the machine runs). Stresses, all at once, for --minutes per setting:
  * every core busy with other work (one busy-loop process per core);
  * one site's agent paused (SIGSTOP) for 0.5 s every 5 s;
  * 5% packet loss on one other site's links.
False verdicts: a site shown dead by any console (polled every 0.25 s) counts once per episode;
failovers: a change of primary. Power cuts go through bench/failover.py's rounds with the same
settings (Firebreak mode), so both halves of the table use the same code as the rest of the
benchmarks.

Run (as root): .venv/bin/python bench/detector.py --settings 0.2/0.2/1.0/1.5,0.1/0.1/0.5/0.75 \
    --minutes 10 --cuts 10
Writes docs/bench/detector.json and detector.svg and prints the Markdown table for
docs/BENCHMARKS.md; `--render FILE` does only that, from a saved run.

The two-hour stress of each setting is a run of its own (two do not fit one sitting), e.g.
    .venv/bin/python bench/detector.py --settings 0.1/0.1/0.5/0.75 --minutes 120 --cuts 0 \
        --idle-seconds 0 --out docs/bench/detector-stress-fast.json
and `--render A.json,B.json` puts several runs in one table. The JSON is written every five
minutes of stress: a run that stops keeps what it saw, marked "stopped early".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import runner  # noqa: E402
from firebreak.drill.charts import distribution_svg, percentile  # noqa: E402
from firebreak.lab import lab  # noqa: E402
from firebreak.lab.state import lab_home  # noqa: E402

FIELDS = ("probe_interval", "probe_timeout", "window", "fresh")


def parse_setting(text: str) -> dict[str, float]:
    values = [float(x) for x in text.split("/")]
    if len(values) != 4:
        raise SystemExit(f"--settings: expected interval/timeout/window/fresh, got {text!r}")
    return dict(zip(FIELDS, values))


def apply(setting: dict[str, float]) -> None:
    """Rewrite every site's agent.yml with these detector settings and restart its agent, one site
    at a time (as an operator rolling a configuration change)."""
    st = lab.status()
    for site in st["sites"]:
        path = Path(lab_home()) / "sites" / site / "agent.yml"
        cfg = yaml.safe_load(path.read_text())
        cfg.setdefault("detector", {}).update(setting)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        lab.stop_component(site, "agent")
        lab.start_component(site, "agent")
    wait(lambda: lab.status()["healthy"], 120, "a healthy lab after restarting the agents")


def wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 - a lab settling may refuse for a moment
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


class Watch(threading.Thread):
    """Polls every console's /api/status; counts dead-verdict episodes and primary changes."""

    def __init__(self, consoles: dict[str, str]):
        super().__init__(daemon=True)
        self.consoles, self.stop = consoles, threading.Event()
        self.episodes: list[dict] = []
        self.primaries: list[str] = []
        self._dead: set[tuple[str, str]] = set()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as c:
            while not self.stop.is_set():
                for observer, url in self.consoles.items():
                    try:
                        doc = c.get(url + "/api/status").json()
                    except (httpx.HTTPError, ValueError):
                        continue
                    now_dead = {(observer, s) for s, v in doc.get("sites", {}).items() if v.get("dead")}
                    for key in now_dead - self._dead:
                        self.episodes.append({"observer": key[0], "site": key[1], "at": time.time()})
                    self._dead = (self._dead - {k for k in self._dead if k[0] == observer}) | now_dead
                    p = doc.get("primary")
                    if p and (not self.primaries or self.primaries[-1] != p):
                        self.primaries.append(p)
                self.stop.wait(0.25)


# What a false alarm short of a verdict costs: the coordinator's actions on links it reads as cut
# or flapping (each etcd leadership move is an etcd election; each dropped member key, a new
# synchronous standby), and a site's database door refusing writes because its agent read itself
# cut off, counted from the agents' own logs.
DISTURBANCES = {"etcd_leader_moves": "moved etcd leadership", "standbys_dropped": "dropping its member key",
                "doors_refusing_writes": "database door: writes to nobody", "flap_reads": "links flapping:"}


def disturbances(paths: list[Path], since: float, until: float) -> dict[str, int]:
    """How many of each DISTURBANCES line the agents logged between since and until (epoch s)."""
    counts = dict.fromkeys(DISTURBANCES, 0)
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if since <= doc.get("ts", 0) <= until:
                for key, needle in DISTURBANCES.items():
                    counts[key] += needle in doc.get("msg", "")
    return counts


def distinct_episodes(episodes: list[dict]) -> list[dict]:
    """Each episode is seen by each console that shows it: one per (site, start within 2 s)."""
    distinct: list[dict] = []
    for e in sorted(episodes, key=lambda e: e["at"]):
        if not any(d["site"] == e["site"] and abs(d["at"] - e["at"]) < 2.0 for d in distinct):
            distinct.append(e)
    return distinct


def stressed(minutes: float, checkpoint=lambda partial: None, every: float = 300.0) -> dict:
    """The stresses for `minutes`; every `every` seconds, checkpoint(what has been seen so far),
    so that a two-hour run that stops (the machine, the lab) keeps what it measured."""
    st = lab.status()
    sites = list(st["sites"])
    paused_site, lossy_site = sites[1], sites[2]
    consoles = {n: s["console"] for n, s in st["sites"].items()}
    agent_logs = [p for site in sites for p in lab.log_paths(site, "agent")]
    watch = Watch(consoles)
    watch.start()
    pauses = 0
    since = time.time()
    t0 = time.monotonic()
    t_end, next_checkpoint = t0 + minutes * 60, t0 + every
    hogs: list[subprocess.Popen] = []

    def seen() -> dict:
        now = time.time()
        distinct = distinct_episodes(list(watch.episodes))
        return {"minutes": round((time.monotonic() - t0) / 60, 2), "since": since, "until": now,
                "agent_pauses": pauses, "paused_site": paused_site, "lossy_site": lossy_site,
                **disturbances(agent_logs, since, now),
                "false_dead_verdicts": len(distinct), "verdicts": distinct,
                "failovers": max(0, len(watch.primaries) - 1), "primaries": list(watch.primaries)}
    try:
        hogs += [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
        lab.degrade(lossy_site, loss=5, rate_kbit=0)
        while time.monotonic() < t_end:
            agent = lab.status()["sites"][paused_site]["processes"].get("agent", {}).get("pid")
            if agent:
                os.kill(agent, signal.SIGSTOP)
                time.sleep(0.5)
                os.kill(agent, signal.SIGCONT)
                pauses += 1
            time.sleep(4.5)
            if time.monotonic() >= next_checkpoint:
                next_checkpoint += every
                checkpoint(seen())
    finally:
        # The hogs first, whatever else fails: left running they would starve the machine.
        try:
            for h in hogs:
                h.kill()
                h.wait()
        finally:
            watch.stop.set()
            watch.join(timeout=5)
            lab.undegrade(lossy_site)
    return seen()


def idle_cost(seconds: float) -> dict:
    """Cores used by the agents and by etcd (every site's summed) over `seconds` of a quiet lab."""
    from bench.claims import cpu_seconds

    before = cpu_seconds(lab.status())
    time.sleep(seconds)
    after = cpu_seconds(lab.status())
    return {"seconds": seconds, **{f"{k}_cores": round((after.get(k, 0.0) - before.get(k, 0.0)) / seconds, 3)
                                   for k in ("agent", "etcd", "machine")}}


def cuts(n: int, label: str) -> dict:
    """n power cuts of the primary's site with these settings, by bench/failover.py (Firebreak mode)."""
    out = ROOT / "docs" / "bench" / f"detector-{label}"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "failover.py"), "--rounds", str(n), "--modes", "firebreak",
                        "--keep-lab", "--out", str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"bench/failover.py failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    doc = json.loads((out / "failover-firebreak.json").read_text())
    return {"summary": doc["summary"]["firebreak"], "rto_s": [x["rto_s"] for x in doc["results"]]}


def label(setting: dict[str, float]) -> str:
    return "/".join(f"{setting[f]:g}" for f in FIELDS)


def stressed_for(stress: dict) -> str:
    """The table's "stress" cell: how long, how many pauses; "–" for a row measured without it."""
    if not stress:
        return "–"
    return (f"{round(stress['minutes'], 1):g} min{' (stopped early)' if stress.get('stopped_early') else ''}, "
            f"{stress.get('agent_pauses', 0)} pauses")


def render(doc: dict, svg: Path) -> str:
    """The Markdown table of a run (one row per setting), and its plot written to `svg`."""
    lines = ["| setting (interval/timeout/window/fresh) | agents, etcd (cores, quiet) | stress | false dead "
             "verdicts | failovers | etcd leader moves | standbys dropped | doors refusing writes | links read as flapping | "
             "cuts | p50 | p95 | p99 | max | lost |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    series = {}
    for row in doc["rows"]:
        idle, stress, cut = row.get("idle") or {}, row.get("stress") or {}, row.get("cuts") or {}
        rto = cut.get("rto_s") or []
        # Rows of merged runs say which run they come from: a setting may have one of each.
        name = label(row["setting"]) + (f" (run of {row['run']['started'][:16]})" if "run" in row else "")
        if rto:
            series[name] = rto
        q = (lambda p: f"{percentile(rto, p):.2f} s") if rto else (lambda p: "–")
        lines.append(
            f"| {name} | {idle.get('agent_cores', '–')}, {idle.get('etcd_cores', '–')} | "
            f"{stressed_for(stress)} | "
            f"{stress.get('false_dead_verdicts', '–')} | {stress.get('failovers', '–')} | "
            f"{stress.get('etcd_leader_moves', '–')} | {stress.get('standbys_dropped', '–')} | "
            f"{stress.get('doors_refusing_writes', '–')} | {stress.get('flap_reads', '–')} | {len(rto)} | "
            f"{q(50)} | {q(95)} | {q(99)} | {f'{max(rto):.2f} s' if rto else '–'} | "
            f"{(cut.get('summary') or {}).get('lost', '–')} |")
    svg.write_text(distribution_svg(series, "Write unavailability after a power cut of the primary's site, "
                                            "by detector setting"))
    return "\n".join(lines)


def merged(paths: list[Path]) -> dict:
    """The rows of several saved runs as one table (the two-hour stress of each setting is a run of
    its own: two of them do not fit one sitting), each row keeping its run's start and command."""
    docs = [json.loads(p.read_text()) for p in paths]
    if len(docs) == 1:
        return docs[0]
    rows = [{**row, "run": {"started": d["started"], "command": d["command"]}} for d in docs for row in d["rows"]]
    return {"runs": [{k: d[k] for k in ("command", "started", "machine")} for d in docs], "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", default="0.2/0.2/1.0/1.5,0.1/0.1/0.5/0.75")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--cuts", type=int, default=10)
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "detector.json"))
    ap.add_argument("--render", metavar="FILE[,FILE...]",
                    help="only print the table and write the plot of saved runs (several: one table, "
                         "the plot beside the first)")
    args = ap.parse_args()
    if args.render:
        paths = [Path(x) for x in args.render.split(",")]
        # Several runs: a plot of their own beside the first, which keeps its run's plot.
        svg = paths[0].with_suffix(".svg") if len(paths) == 1 else paths[0].with_name(paths[0].stem + "-merged.svg")
        print(render(merged(paths), svg))
        return
    runner.heal_on_sigterm()   # a `kill` stops the hogs and heals the packet loss, as Ctrl-C does
    started = datetime.now(timezone.utc)
    rows: list[dict] = []

    def write(partial: dict | None = None) -> dict:
        """After each setting and each stress checkpoint: a run that stops keeps what it measured."""
        doc = {"command": "bench/detector.py " + " ".join(sys.argv[1:]), "started": started.isoformat(),
               "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
               "rows": rows + ([partial] if partial else [])}
        Path(args.out).write_text(json.dumps(doc, indent=2, default=str))
        return doc
    lab.down()
    lab.up(progress=lambda m: print("  lab:", m, flush=True))
    try:
        for text in args.settings.split(","):
            setting = parse_setting(text)
            apply(setting)
            idle = idle_cost(args.idle_seconds) if args.idle_seconds else None
            print(f"settings {text}: idle cost {json.dumps(idle)}; stress for {args.minutes} min", flush=True)

            def row(stress: dict | None, failover: dict | None = None) -> dict:
                return {"setting": setting, "idle": idle, "stress": stress, "cuts": failover}

            def checkpoint(seen: dict) -> None:
                write(row({**seen, "stopped_early": True}))
                print(json.dumps({k: v for k, v in seen.items() if k != "verdicts"}), flush=True)
            stress = stressed(args.minutes, checkpoint) if args.minutes else None
            if stress:   # kept whole even if what follows (the cuts) fails
                write(row(stress))
            print(json.dumps({k: v for k, v in (stress or {}).items() if k != "verdicts"}), flush=True)
            wait(lambda: lab.status()["healthy"], 120, "a healthy lab after the stress")
            failover = cuts(args.cuts, text.replace("/", "-")) if args.cuts else None
            rows.append(row(stress, failover))
            write()
            print(json.dumps({"setting": text, "cuts": (failover or {}).get("summary")}), flush=True)
    finally:
        lab.down()
    print(render(write(), Path(args.out).with_suffix(".svg")))


if __name__ == "__main__":
    main()
