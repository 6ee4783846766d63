"""A table of drills: each fault on each site (or on the primary's site), with Firebreak and
with Patroni alone (agents frozen), on one lab, in one run. Writes docs/bench/drills.json and
prints a Markdown table for docs/BENCHMARKS.md.

Run: .venv/bin/python bench/drills.py [--sites primary|sync-standby|all] [--faults power-cut,isolate,degrade,ops-tools]

Gray failures, each aimed at the primary's site whatever --sites says: partition-sync (its link
to the synchronous standby's site cut for 10 s), partition-etcd (its link to etcd's leader's site,
15 s), pause (every process of it stopped 8 s), pause-postgres (its PostgreSQL alone, 8 s), flap
(its links down and up every 1 s for 60 s: each half-second down as long as the detector's
window), flap-fast (every 0.8 s for 30 s: each 0.4 s down shorter than it), bad-value (malformed views under its site's key for 10 s). `--replication quorum` runs
the lab with quorum commit. With --repeat N, a summary of write unavailability p50/p95/max per fault and mode:

    .venv/bin/python bench/drills.py --faults partition-sync,partition-etcd,pause,pause-postgres,flap \
        --repeat 3 --name gray

With `--repeat N --modes firebreak --name returns`, each fault on each site N times, Firebreak only,
into docs/bench/returns.json, with a summary of what a site's return costs: per fault and site, the
longest write gap of each drill against its own write unavailability (the bar: gap at most the
unavailability plus 0.5 s, in every drill).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import runner  # noqa: E402
from firebreak.drill.scenario import FaultStep, Scenario  # noqa: E402
from firebreak.errors import DrillAborted, LabError  # noqa: E402
from firebreak.lab import lab  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", default="primary", help="'primary', 'sync-standby', 'all', or a comma list")
    ap.add_argument("--faults", default="power-cut,isolate,degrade,ops-tools")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each fault on each site")
    ap.add_argument("--modes", default="firebreak,patroni")
    ap.add_argument("--name", default="drills", help="output file name (docs/bench/NAME.json)")
    ap.add_argument("--replication", choices=("sync", "quorum"), default=None,
                    help="the lab's replication (lab up --replication; its topology's when not given)")
    ap.add_argument("--rto-min-ms", default=None,
                    help="comma list of retransmission floors between sites (ms, 0: the kernel's 200 ms); "
                         "each drill runs once with each, in turn, on the same lab")
    ap.add_argument("--thin-linear", default=None,
                    help="comma list of 0/1: linear retransmission timeouts for thin streams off/on in every "
                         "site; each drill runs once with each, in turn (with --rto-min-ms: each pair)")
    args = ap.parse_args()
    floors = [int(x) for x in args.rto_min_ms.split(",")] if args.rto_min_ms else [None]
    thins = [bool(int(x)) for x in args.thin_linear.split(",")] if args.thin_linear else [None]
    runner.heal_on_sigterm()  # a `kill` of the benchmark heals the fault it left, like Ctrl-C
    modes = args.modes.split(",")
    if not args.keep_lab:
        lab.down()
        lab.up(progress=lambda m: print("  lab:", m, flush=True), replication=args.replication)
    sites = list(lab.status()["sites"]) if args.sites == "all" else args.sites.split(",")
    rows = []
    try:
        for fault, site, run, baseline, floor, thin in ((f, s, r, b, floor, thin) for f in args.faults.split(",")
                                                        for r in range(args.repeat) for s in sites for b in modes
                                                        for floor in floors for thin in thins):
            step = GRAY[fault] if fault in GRAY else \
                FaultStep(fault=fault, site=site, loss=5 if fault == "degrade" else 0,
                          rate_kbit=4000 if fault == "degrade" else 0,
                          duration=8 if fault in ("degrade", "ops-tools", "isolate") else 0)
            sc = Scenario(name=f"{fault} {site} ({baseline})", clients=args.clients, baseline=baseline,
                          steps=[step])
            suffix = f"-{run + 1}" if args.repeat > 1 else ""
            if floor is not None:
                lab.rto_min(floor)
                suffix += f"-rto{floor}"
            if thin is not None:
                lab.thin_linear(thin)
                suffix += f"-thin{int(thin)}"
            try:
                rep = runner.run(sc, Path(args.out) / args.name / f"{fault}-{site}-{baseline}{suffix}")
            except DrillAborted:
                raise  # Ctrl-C or a kill: the benchmark stops, healed
            except LabError as e:
                # e.g. etcd's leader sits in the primary's own site (Patroni alone places nothing):
                # that drill cannot run; the table says so rather than the benchmark stopping.
                print(json.dumps({"fault": fault, "mode": baseline, "run": run + 1, "error": str(e)}), flush=True)
                continue
            f = rep["faults"][0]
            reads = sum(rep["read_failures"].values())
            ops_ = rep["ops_actions"]
            row = {"fault": fault, "site": f["site"] + (f"-{f['peer']}" if f.get("peer") else ""),
                   "mode": baseline + ("" if floor is None else f"/rto_min={floor}ms")
                   + ("" if thin is None else f"/thin_linear={int(thin)}"), "run": run + 1, "verdict": rep["verdict"],
                   # Primaries that acknowledged writes during the drill, less the one it began with.
                   "failovers": max(0, len(rep.get("primaries", [])) - 1),
                   "acked": rep["acked_writes"], "lost": rep["acked_lost"], "rto_s": rep["write_rto_s"],
                   "max_gap_s": rep["max_write_gap_s"], "read_failures": reads,
                   "split_brain": rep["split_brain"],
                   "ordinary_client_rto_s": (rep.get("ordinary_client") or {}).get("write_unavailability_s"),
                   "ordinary_client_max_gap_s": (rep.get("ordinary_client") or {}).get("max_write_gap_s"),
                   "ops_ok": f"{sum(d['ok'] for d in ops_.values())}/{sum(d['tried'] for d in ops_.values())}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if not args.keep_lab:
            lab.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.repeat > 1:
        summary = return_summary(rows)
        (out / f"{args.name}.json").write_text(json.dumps({"command": "bench/drills.py " + " ".join(sys.argv[1:]),
                                                           "rows": rows, "summary": summary,
                                                           "by_fault": by_fault(rows)}, indent=2))
        print(json.dumps(summary, indent=2))
        print(by_fault_table(by_fault(rows)))
        return
    # Merge with earlier rows, so one fault can be rerun without running the whole table again.
    path = out / f"{args.name}.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    keys = {(r["fault"], r["mode"]) for r in rows}
    order = ["power-cut", "isolate", "degrade", "ops-tools"]
    rows = sorted([r for r in earlier if (r["fault"], r["mode"]) not in keys] + rows,
                  key=lambda r: (order.index(r["fault"]) if r["fault"] in order else 9, r["mode"] != "firebreak"))
    path.write_text(json.dumps(rows, indent=2))
    print("\n| fault | site | mode | verdict | acked writes | lost | write RTO | longest gap | read failures | split brain | ops actions ok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rto = "—" if r["rto_s"] is None else f"{r['rto_s']:.2f} s"
        print(f"| {r['fault']} | {r['site']} | {'Firebreak' if r['mode'] == 'firebreak' else 'Patroni alone'} | "
              f"{r['verdict']} | {r['acked']} | {r['lost']} | {rto} | {r['max_gap_s']:.2f} s | {r['read_failures']} | "
              f"{'yes' if r['split_brain'] else 'no'} | {r['ops_ok']} |")


# The gray failures: each aimed at the primary's site (runner resolves the roles when it runs).
GRAY = {
    "partition-sync": FaultStep(fault="partition", site="primary", peer="sync-standby", duration=10),
    "partition-etcd": FaultStep(fault="partition", site="primary", peer="etcd-leader", duration=15),
    "pause": FaultStep(fault="pause", site="primary", duration=8),
    "pause-postgres": FaultStep(fault="pause", site="primary", component="postgres", duration=8),
    "flap": FaultStep(fault="flap", site="primary", period=1.0, duration=60),
    # down 0.4 s of each 0.8 s: past half the detector's window, never the whole of it, so no
    # verdict ever comes (before the flap rule moved the primary, it stayed for the whole flap)
    "flap-fast": FaultStep(fault="flap", site="primary", period=0.8, duration=30),
    # malformed views written under the primary's site's key with its agent's identity for 10 s
    "bad-value": FaultStep(fault="bad-value", site="primary", duration=10),
}


def by_fault(rows: list[dict]) -> dict:
    """Per fault and mode: write unavailability p50/p95/max (None: writes never resumed during the
    drill, counted as its whole length), longest gap, acknowledged, lost, failovers."""
    out: dict = {}
    for (fault, mode) in dict.fromkeys((r["fault"], r["mode"]) for r in rows):
        mine = [r for r in rows if (r["fault"], r["mode"]) == (fault, mode)]
        rtos = sorted(r["rto_s"] if r["rto_s"] is not None else float("inf") for r in mine)
        # the ordinary client's (libpq defaults through a spared door), where the drill had one
        ordinary = sorted(x if x is not None else float("inf")
                          for r in mine for x in (r.get("ordinary_client_rto_s") or []))
        out[f"{fault} {mode}"] = {
            "runs": len(mine), "rto_p50_s": nearest_rank(rtos, 50), "rto_p95_s": nearest_rank(rtos, 95),
            "rto_max_s": rtos[-1], "max_gap_s": max(r["max_gap_s"] for r in mine),
            "ordinary_p50_s": nearest_rank(ordinary, 50) if ordinary else None,
            "ordinary_max_s": ordinary[-1] if ordinary else None,
            "acked": sum(r["acked"] for r in mine), "lost": sum(r["lost"] for r in mine),
            "failovers": sum(r.get("failovers", 0) for r in mine), "split_brain": any(r["split_brain"] for r in mine)}
    return out


def nearest_rank(ordered: list[float], p: float) -> float:
    """The nearest-rank percentile: a value that was measured (never one interpolated between a
    drill that resumed and one that never did)."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def by_fault_table(summary: dict) -> str:
    def s(x: float) -> str:
        return "never" if x == float("inf") else f"{x:.2f} s"
    lines = ["| fault | mode | runs | write unavailability p50 / p95 / max | ordinary client p50 / max | longest gap | "
             "acknowledged | lost | failovers | split brain |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, d in summary.items():
        fault, mode = key.rsplit(" ", 1)
        label = {"firebreak": "Firebreak", "patroni": "Patroni alone"}.get(mode, mode)
        lines.append(f"| {fault} | {label} | {d['runs']} | "
                     f"{s(d['rto_p50_s'])} / {s(d['rto_p95_s'])} / {s(d['rto_max_s'])} | "
                     + ("—" if d.get("ordinary_p50_s") is None else f"{s(d['ordinary_p50_s'])} / {s(d['ordinary_max_s'])}")
                     + f" | {s(d['max_gap_s'])} | "
                     f"{d['acked']} | {d['lost']} | {d['failovers']} | {'yes' if d['split_brain'] else 'no'} |")
    return "\n".join(lines)


def return_summary(rows: list[dict]) -> dict:
    """Per fault and site: runs, unavailability and longest gap (max), and how many drills kept
    the longest gap within the unavailability plus 0.5 s."""
    out: dict = {}
    for r in rows:
        d = out.setdefault(f"{r['fault']} {r['site']}", {"runs": 0, "passed": 0, "max_rto_s": 0.0, "max_gap_s": 0.0,
                                                           "gap_within_rto_plus_0.5": 0, "worst_gap_minus_rto_s": None})
        d["runs"] += 1
        d["passed"] += r["verdict"] == "pass"
        rto = r["rto_s"] if r["rto_s"] is not None else float("inf")
        d["max_rto_s"] = max(d["max_rto_s"], rto)
        d["max_gap_s"] = max(d["max_gap_s"], r["max_gap_s"])
        excess = round(r["max_gap_s"] - rto, 3)
        d["gap_within_rto_plus_0.5"] += excess <= 0.5
        d["worst_gap_minus_rto_s"] = excess if d["worst_gap_minus_rto_s"] is None else max(d["worst_gap_minus_rto_s"], excess)
    return out


if __name__ == "__main__":
    main()
