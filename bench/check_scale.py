"""`firebreak check` at scale, timed as a user runs it: the whole command in a subprocess.

A generated topology of 10,000 services over 10 sites is written to a YAML file; then
`firebreak check big.yaml --pairs --format F --output big.F` runs for every format, several
times each, and the benchmark reports wall time (median and max) and the peak memory of the
command's whole process tree (the JSON writer forks one worker per core; their resident sets
are summed at each sample, so shared pages are counted twice: an upper bound).

Targets (docs/BENCHMARKS.md): the JSON command in <= 2 s and <= 500 MB; every format in <= 3 s.
Run: .venv/bin/python bench/check_scale.py [--repeat 5] [--growth]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLI = [str(Path(sys.executable).parent / "firebreak")]  # the command a user types


def generate(services: int, sites: int, seed: int = 7) -> dict:
    """A random topology: tiers of services with random dependencies on earlier ones, a few
    databases and quorums, ops tools that services name for recovery."""
    rng = random.Random(seed)
    site_names = [f"dc{i}" for i in range(sites)]
    tools = [f"tool{i}" for i in range(max(2, services // 500))]
    data: dict = {"name": f"gen-{services}x{sites}", "sites": site_names, "services": {}}
    names: list[str] = []
    for t in tools:
        data["services"][t] = {"kind": "ops-tool",
                               "replicas": {s: 1 for s in rng.sample(site_names, rng.randint(1, 3))}}
    for i in range(services - len(tools)):
        name = f"svc{i}"
        placed = rng.sample(site_names, rng.randint(1, min(3, sites)))
        svc: dict = {"replicas": {s: rng.randint(1, 4) for s in placed}, "needs": rng.randint(1, 4)}
        roll = rng.random()
        if roll < 0.05:
            svc.update(kind="database", primary=placed[0], replication=rng.choice(["sync", "async"]),
                       failover=rng.choice(["auto", "manual"]))
        elif roll < 0.07:
            svc["kind"] = "quorum"
        if names:
            svc["depends_on"] = sorted(set(rng.choice(names[-2000:]) for _ in range(rng.randint(0, 3))))
        svc["recovery"] = rng.sample(tools, rng.randint(0, 2))
        data["services"][name] = svc
        names.append(name)
    return data


def run_once(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak MB of the process tree, exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            rss = sum(p.memory_info().rss for p in tree)
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.01)
    return time.perf_counter() - t0, peak / 2**20, proc.returncode


def measure(topology: Path, fmt: str, out_dir: Path, repeat: int, pairs: bool = True) -> dict:
    out = out_dir / f"report.{fmt}"
    args = CLI + ["check", str(topology), "--format", fmt, "--output", str(out)] + (["--pairs"] if pairs else [])
    runs = [run_once(args) for _ in range(repeat)]
    codes = {c for _, _, c in runs}
    if not codes <= {0, 1} or not out.exists():
        raise SystemExit(f"check --format {fmt} failed with exit {codes}: run {' '.join(args)} by hand")
    times = [t for t, _, _ in runs]
    return {"format": fmt, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "peak_mb": round(max(m for _, m, _ in runs)), "output_mb": round(out.stat().st_size / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--growth", action="store_true", help="also measure how the JSON command grows")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    print(f"machine: {machine}")
    results: dict = {"machine": machine, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        topo = tmp_path / "big.yaml"
        topo.write_text(yaml.safe_dump(generate(args.services, args.sites), sort_keys=False))
        print(f"topology: {args.services} services x {args.sites} sites, {topo.stat().st_size / 2**20:.1f} MB of YAML; "
              "singles and pairs")
        for fmt in ("json", "text", "md", "html"):
            row = measure(topo, fmt, tmp_path, args.repeat)
            bar = 2.0 if fmt == "json" else 3.0
            ok = row["median_s"] <= bar and (fmt != "json" or row["peak_mb"] <= 500)
            row["verdict"] = "PASS" if ok else "FAIL"
            results["rows"].append(row)
            print(f"  check --format {fmt:<4}: {row['median_s']:.2f} s median, {row['max_s']:.2f} s max of "
                  f"{args.repeat}, peak {row['peak_mb']} MB, output {row['output_mb']} MB  "
                  f"[{row['verdict']}: target <= {bar:g} s" + (", <= 500 MB]" if fmt == "json" else "]"))
        if args.growth:
            results["growth"] = []
            print("growth of the JSON command (10 sites, pairs):")
            for n in (1_000, 2_500, 5_000, 10_000, 20_000):
                g = tmp_path / f"g{n}.yaml"
                g.write_text(yaml.safe_dump(generate(n, 10), sort_keys=False))
                row = measure(g, "json", tmp_path, 1) | {"services": n}
                results["growth"].append(row)
                print(f"  {n:>6} services: {row['median_s']:.2f} s, peak {row['peak_mb']} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
