"""A table of drills: each fault on each site (or on the primary's site), with Firebreak and
with Patroni alone (agents frozen), on one lab, in one run. Writes docs/bench/drills.json and
prints a Markdown table for docs/BENCHMARKS.md.

Run: .venv/bin/python bench/drills.py [--sites primary|sync-standby|all] [--faults power-cut,isolate,degrade,ops-tools]

With `--repeat N --modes firebreak --name returns`, each fault on each site N times, Firebreak only,
into docs/bench/returns.json, with a summary of what a site's return costs: per fault and site, the
longest write gap of each drill against its own write unavailability (the bar: gap at most the
unavailability plus 0.5 s, in every drill).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.drill import runner  # noqa: E402
from firebreak.drill.scenario import FaultStep, Scenario  # noqa: E402
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
    args = ap.parse_args()
    runner.heal_on_sigterm()  # a `kill` of the benchmark heals the fault it left, like Ctrl-C
    modes = args.modes.split(",")
    if not args.keep_lab:
        lab.down()
        lab.up(progress=lambda m: print("  lab:", m, flush=True))
    sites = list(lab.status()["sites"]) if args.sites == "all" else args.sites.split(",")
    rows = []
    try:
        for fault, site, run, baseline in ((f, s, r, b) for f in args.faults.split(",") for r in range(args.repeat)
                                           for s in sites for b in modes):
            step = FaultStep(fault=fault, site=site, loss=5 if fault == "degrade" else 0,
                             rate_kbit=4000 if fault == "degrade" else 0,
                             duration=8 if fault in ("degrade", "ops-tools", "isolate") else 0)
            sc = Scenario(name=f"{fault} {site} ({baseline})", clients=args.clients, baseline=baseline,
                          steps=[step])
            suffix = f"-{run + 1}" if args.repeat > 1 else ""
            rep = runner.run(sc, Path(args.out) / args.name / f"{fault}-{site}-{baseline}{suffix}")
            f = rep["faults"][0]
            reads = sum(rep["read_failures"].values())
            ops_ = rep["ops_actions"]
            row = {"fault": fault, "site": f["site"], "mode": baseline, "run": run + 1, "verdict": rep["verdict"],
                   "acked": rep["acked_writes"], "lost": rep["acked_lost"], "rto_s": rep["write_rto_s"],
                   "max_gap_s": rep["max_write_gap_s"], "read_failures": reads,
                   "split_brain": rep["split_brain"],
                   "ordinary_client_rto_s": (rep.get("ordinary_client") or {}).get("write_unavailability_s"),
                   "ops_ok": f"{sum(d['ok'] for d in ops_.values())}/{sum(d['tried'] for d in ops_.values())}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if not args.keep_lab:
            lab.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.repeat > 1:
        (out / f"{args.name}.json").write_text(json.dumps({"command": "bench/drills.py " + " ".join(sys.argv[1:]),
                                                           "rows": rows, "summary": return_summary(rows)}, indent=2))
        print(json.dumps(return_summary(rows), indent=2))
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
