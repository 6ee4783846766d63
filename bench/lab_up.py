"""How long `firebreak lab up` takes (target: at most 30 s), and `lab down`.

Run: .venv/bin/python bench/lab_up.py --runs 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firebreak.lab import lab  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--net", default="auto")
    args = ap.parse_args()
    lab.down()
    ups, downs = [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        st = lab.up(net_mode=args.net)
        ups.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lab.down()
        downs.append(time.perf_counter() - t0)
        print(f"run {i + 1}: up {ups[-1]:.1f} s ({st.net}, agents), down {downs[-1]:.1f} s", flush=True)
    print(f"machine: {platform.node()} {platform.machine()}, {len(ups)} runs")
    print(f"lab up: median {statistics.median(ups):.1f} s, max {max(ups):.1f} s  "
          f"[{'PASS' if max(ups) <= 30 else 'FAIL'}: target <= 30 s]; lab down: median {statistics.median(downs):.1f} s")


if __name__ == "__main__":
    main()
