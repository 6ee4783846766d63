"""Readiness analysis at scale: 10,000 services over 10 sites, every single-site and pair scenario.

Target (docs/BENCHMARKS.md): at most 2 s on a 2-core machine. Also prints how the time grows
with services and with sites. Run: .venv/bin/python bench/check_scale.py
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time

from firebreak.readiness import analyse_all
from firebreak.topology import topology_from_dict


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


def measure(services: int, sites: int, repeat: int) -> tuple[float, int, int]:
    topo = topology_from_dict(generate(services, sites))
    times = []
    report = None
    for _ in range(repeat):
        report = None
        gc.collect()  # start each run from a clean heap: time the analysis, not the last run's garbage
        t0 = time.perf_counter()
        report = analyse_all(topo, pairs=True)
        times.append(time.perf_counter() - t0)
    findings = sum(len(r.findings) for r in report.scenarios)
    return statistics.median(times), len(report.scenarios), findings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--growth", action="store_true", help="also measure how time grows")
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    t, n, f = measure(10_000, 10, args.repeat)
    verdict = "PASS" if t <= 2.0 else "FAIL"
    print(f"10000 services x 10 sites, {n} scenarios (singles + pairs), {f} findings: "
          f"{t:.2f} s median of {args.repeat}  [{verdict}: target <= 2 s]")
    if args.growth:
        print("growth with services (10 sites):")
        for s in (1_000, 2_500, 5_000, 10_000, 20_000):
            t, n, _ = measure(s, 10, 1)
            print(f"  {s:>6} services: {t:.2f} s  ({t / n * 1e3:.1f} ms per scenario)")
        print("growth with sites (10,000 services):")
        for k in (3, 5, 10, 15, 20):
            t, n, _ = measure(10_000, k, 1)
            print(f"  {k:>3} sites: {n:>4} scenarios, {t:.2f} s  ({t / n * 1e3:.1f} ms per scenario)")


if __name__ == "__main__":
    main()
