"""A table of drills: each fault on each site (or on the primary's site), with Firebreak and
with Patroni alone (agents frozen), on one lab, in one run. Writes docs/bench/drills.json and
prints a Markdown table for docs/BENCHMARKS.md.

Run: .venv/bin/python bench/drills.py [--sites primary|all] [--faults power-cut,isolate,degrade,ops-tools]
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
    ap.add_argument("--sites", default="primary", help="'primary', 'all', or a comma list")
    ap.add_argument("--faults", default="power-cut,isolate,degrade,ops-tools")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    if not args.keep_lab:
        lab.down()
        lab.up(progress=lambda m: print("  lab:", m, flush=True))
    sites = list(lab.status()["sites"]) if args.sites == "all" else args.sites.split(",")
    rows = []
    try:
        for fault in args.faults.split(","):
            for site in sites:
                for baseline in ("firebreak", "patroni"):
                    step = FaultStep(fault=fault, site=site, loss=5 if fault == "degrade" else 0,
                                     rate_kbit=4000 if fault == "degrade" else 0,
                                     duration=8 if fault in ("degrade", "ops-tools", "isolate") else 0)
                    sc = Scenario(name=f"{fault} {site} ({baseline})", clients=args.clients, baseline=baseline,
                                  steps=[step])
                    rep = runner.run(sc, Path(args.out) / "drills" / f"{fault}-{site}-{baseline}")
                    f = rep["faults"][0]
                    reads = sum(rep["read_failures"].values())
                    ops_ = rep["ops_actions"]
                    row = {"fault": fault, "site": f["site"], "mode": baseline, "verdict": rep["verdict"],
                           "acked": rep["acked_writes"], "lost": rep["acked_lost"], "rto_s": rep["write_rto_s"],
                           "max_gap_s": rep["max_write_gap_s"], "read_failures": reads,
                           "split_brain": rep["split_brain"],
                           "ops_ok": f"{sum(d['ok'] for d in ops_.values())}/{sum(d['tried'] for d in ops_.values())}"}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        if not args.keep_lab:
            lab.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Merge with earlier rows, so one fault can be rerun without running the whole table again.
    path = out / "drills.json"
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


if __name__ == "__main__":
    main()
