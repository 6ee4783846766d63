"""The estate benchmark: examples/estate.yaml (four Patroni clusters, five services) in the lab,
silent power cuts of the site holding the most primaries, Firebreak and Patroni alone (agents
frozen) interleaved, each a full drill judged against check's predictions.

Per cluster and per mode: write unavailability p50/p95/max, acknowledged and lost writes; per
service: how often it was observed as check predicted. Also the lab's idle CPU and memory for
this estate on this machine. Writes docs/bench/estate.json, docs/bench/estate.svg (and .png when
Chromium is there) and prints the Markdown table for docs/BENCHMARKS.md.

Run: .venv/bin/python bench/estate.py [--rounds 10] [--modes firebreak,patroni] [--idle 30]
Bar: every cluster's p95 <= 3 s with Firebreak, zero acknowledged writes lost, every service as predicted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import runner  # noqa: E402
from firebreak.drill.charts import distribution_svg, percentile  # noqa: E402
from firebreak.drill.scenario import FaultStep, Scenario  # noqa: E402
from firebreak.lab import lab, procs  # noqa: E402
from firebreak.lab.state import lab_home, load  # noqa: E402
from firebreak.resources import example  # noqa: E402

MODES = {"firebreak": "Firebreak", "patroni": "Patroni alone"}


def idle_usage(seconds: float) -> dict:
    """CPU (cores busy, on average) and memory (proportional set size, so PostgreSQL's shared
    buffers count once) of every process the lab started, its descendants included, while idle."""
    state = load(lab_home())
    pids = procs.marked(state.lab_id)
    ps = {pid: psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)}

    def cpu() -> float:
        total = 0.0
        for p in ps.values():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total
    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu(), time.monotonic()
    pss = 0
    for p in ps.values():
        try:
            pss += p.memory_full_info().pss
        except psutil.Error:
            continue
    mem = psutil.virtual_memory()
    return {"processes": len(ps), "seconds": round(t1 - t0, 1), "cpu_cores": round((c1 - c0) / (t1 - t0), 3),
            "cpu_share_of_machine": round((c1 - c0) / (t1 - t0) / (os.cpu_count() or 1), 3),
            "memory_pss_mib": round(pss / 2**20), "machine_memory_mib": round(mem.total / 2**20)}


def summary(rows: list[dict]) -> dict:
    out: dict = {"clusters": {}, "services": {}}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        for name in mine[0]["clusters"]:
            waits = [r["clusters"][name]["write_unavailability_s"] for r in mine]
            done = [w for w in waits if w is not None]
            out["clusters"].setdefault(name, {})[mode] = {
                "runs": len(waits), "never_resumed": len(waits) - len(done),
                "p50_s": round(percentile(done, 50), 2) if done else None,
                "p95_s": round(percentile(done, 95), 2) if done else None,
                "max_s": round(max(done), 2) if done else None,
                "acked": sum(r["clusters"][name]["acked_writes"] for r in mine),
                "lost": sum(r["clusters"][name]["acked_lost"] for r in mine)}
        for name in mine[0]["services"]:
            out["services"].setdefault(name, {})[mode] = {
                "predicted": sorted({r["services"][name]["predicted"] for r in mine}),
                "observed": sorted({r["services"][name]["observed"] for r in mine}),
                "as_predicted": sum(r["services"][name]["as_predicted"] for r in mine), "runs": len(mine)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--modes", default="firebreak,patroni")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    runner.heal_on_sigterm()  # a `kill` of the benchmark heals the fault it left, like Ctrl-C
    modes = args.modes.split(",")
    out = Path(args.out)
    if not args.keep_lab:
        lab.down()
        t0 = time.monotonic()
        lab.up(example("estate.yaml"), progress=lambda m: print("  lab:", m, flush=True))
        print(f"  lab up: {time.monotonic() - t0:.1f} s", flush=True)
    runner.wait_healthy(120)
    time.sleep(5)
    idle = idle_usage(args.idle)
    print("idle:", json.dumps(idle), flush=True)
    rows = []
    try:
        for rnd in range(args.rounds):
            for mode in modes:
                sc = Scenario(name=f"power-cut busiest site ({mode})", clients=1, baseline=mode,
                              steps=[FaultStep(fault="power-cut", site="primary")])
                rep = runner.run(sc, out / "estate" / f"{rnd + 1:02d}-{mode}",
                                 progress=lambda m: print(f"    {m}", flush=True))
                row = {"round": rnd + 1, "mode": mode, "site": rep["faults"][0]["site"], "verdict": rep["verdict"],
                       "primaries_before": rep.get("primaries_before"),
                       "failures": rep["failures"], "clusters": rep["clusters"], "services": rep["services"],
                       "acked": rep["acked_writes"], "lost": rep["acked_lost"]}
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("round", "mode", "site", "verdict", "acked", "lost")}
                                 | {"unavailability": {c: v["write_unavailability_s"] for c, v in rep["clusters"].items()}},
                                 ), flush=True)
    finally:
        if not args.keep_lab:
            lab.down()
    doc = {"command": "bench/estate.py " + " ".join(sys.argv[1:]), "date": dt.date.today().isoformat(),
           "machine": {"node": platform.node(), "cpus": os.cpu_count(), "arch": platform.machine()},
           "topology": "examples/estate.yaml", "idle": idle, "summary": summary(rows), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "estate.json").write_text(json.dumps(doc, indent=2))
    series = {f"{name} · {MODES[m]}": [r["clusters"][name]["write_unavailability_s"] or 60.0
                                      for r in rows if r["mode"] == m]
              for m in modes for name in rows[0]["clusters"]}
    svg = distribution_svg(series, "Write unavailability per cluster, power cut of the site holding the most primaries")
    (out / "estate.svg").write_text(svg)
    try:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--user-data-dir=/tmp/chr-estate", f"--window-size=760,{90 + 70 * len(series)}",
                        f"--screenshot={out / 'estate.png'}", f"file://{out / 'estate.svg'}"],
                       capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        pass
    print_table(doc)


def print_table(doc: dict) -> None:
    s = doc["summary"]
    print("\n| cluster | mode | p50 | p95 | max | never resumed | acknowledged | lost |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by_mode in s["clusters"].items():
        for mode, c in by_mode.items():
            f = (lambda v: "—" if v is None else f"{v:.2f} s")
            print(f"| {name} | {MODES[mode]} | {f(c['p50_s'])} | {f(c['p95_s'])} | {f(c['max_s'])} | "
                  f"{c['never_resumed']} | {c['acked']:,} | {c['lost']} |")
    print("\n| service | mode | predicted | observed | as predicted |")
    print("|---|---|---|---|---|")
    for name, by_mode in s["services"].items():
        for mode, v in by_mode.items():
            print(f"| {name} | {MODES[mode]} | {', '.join(v['predicted'])} | {', '.join(v['observed'])} | "
                  f"{v['as_predicted']}/{v['runs']} |")
    i = doc["idle"]
    print(f"\nIdle: {i['processes']} processes, {i['cpu_cores']:.2f} cores busy "
          f"({i['cpu_share_of_machine']:.0%} of {doc['machine']['cpus']}), {i['memory_pss_mib']} MiB (PSS)")


if __name__ == "__main__":
    main()
