"""A drill's report: report.json for programs, report.html (self-contained) for a post-mortem."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from firebreak.drill.charts import timeline_svg
from firebreak.drill.workload import Op

_env = Environment(loader=PackageLoader("firebreak.drill", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def buckets(ops: list[Op], start: float, seconds: int) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[list[int]]] = {}
    for o in ops:
        if o.kind != "write":
            continue
        i = int(o.complete - start)
        if 0 <= i < seconds:
            b = out.setdefault(o.site, [[0, 0] for _ in range(seconds)])
            b[i][0 if o.outcome == "ok" else 1] += 1
    return {s: [tuple(x) for x in v] for s, v in sorted(out.items())}


def write_report(report: dict, ops: list[Op], start: float, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    seconds = max(1, math.ceil(report["duration_s"]))
    markers = []
    for f in report["faults"]:
        markers.append((f["at_s"], f"{f['fault']} {f['site']}", "#b00020"))
        if f["write_rto_s"] is not None:
            markers.append((f["at_s"] + f["write_rto_s"], f"writes resume (+{f['write_rto_s']:.2f} s)", "#1b7f3b"))
        markers.append((f["healed_at_s"], f"heal {f['site']}", "#555"))
    svg = timeline_svg(buckets(ops, start, seconds), markers, seconds,
                       "Writes per second by the site whose door answered")
    json_path, html_path = directory / "report.json", directory / "report.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path.write_text(_env.get_template("report.html").render(
        r=report, svg=svg, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        started=datetime.fromtimestamp(report.get("started", 0), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")))
    return json_path, html_path
