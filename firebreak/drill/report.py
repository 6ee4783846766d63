"""A drill's report: report.json for programs, report.html (self-contained) for a post-mortem."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from firebreak.drill.charts import timeline_svg
from firebreak.drill.workload import Op

_env = Environment(loader=PackageLoader("firebreak.drill", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def buckets(ops: list[Op], start: float, seconds: int, kind: str = "write") -> dict[str, list[tuple[int, int]]]:
    """Writes per second by the site whose door answered: (acknowledged, not) for each second;
    kind "sql" for the ordinary database client's."""
    out: dict[str, list[list[int]]] = {}
    for o in ops:
        if o.kind != kind:
            continue
        i = int(o.complete - start)
        if 0 <= i < seconds:
            b = out.get(o.site)
            if b is None:  # never a setdefault: its default would be built for every write
                b = out[o.site] = [[0, 0] for _ in range(seconds)]
            b[i][0 if o.outcome == "ok" else 1] += 1
    return {s: [tuple(x) for x in v] for s, v in sorted(out.items())}


def write_report(report: dict, ops: list[Op], start: float, directory: Path,
                 title: str = "Writes per second by the site whose door answered") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    # The judgment first: nothing after it (the chart) may cost a long drill its report.
    json_path.write_text(json.dumps(report, indent=2, default=str))
    seconds = max(1, math.ceil(report["duration_s"]))
    markers = []
    for f in report["faults"]:
        markers.append((f["at_s"], f"{f['fault']} {f['site']}", "#b00020"))
        if f["write_rto_s"] is not None:
            markers.append((f["at_s"] + f["write_rto_s"], f"writes resume (+{f['write_rto_s']:.2f} s)", "#1b7f3b"))
        markers.append((f["healed_at_s"], f"heal {f['site']}", "#555"))
    svg = timeline_svg(buckets(ops, start, seconds), markers, seconds, title)
    html_path.write_text(_env.get_template("report.html").render(
        r=report, svg=svg, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        started=datetime.fromtimestamp(report.get("started", 0), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")))
    return json_path, html_path


def junit_xml(report: dict) -> str:
    """The drill as a JUnit XML test suite, one test case per objective, so a CI system shows a
    drill like a test run. Hard failures that are not objectives (duplicates, split brain, no
    write acknowledged) are one more test case, `correctness`."""
    from xml.etree import ElementTree as ET

    name = report["scenario"]["name"]
    cases = [(o["objective"], None if o["met"] else o["reason"], o["reason"]) for o in report.get("objectives", [])]
    objective_texts = {o["reason"] for o in report.get("objectives", [])}
    hard = [f for f in report["failures"] if not any(f.startswith(t) for t in objective_texts)]
    cases.append(("correctness", "; ".join(hard) or None,
                  f"{report['duplicates']} duplicates, split brain {'yes' if report['split_brain'] else 'no'}"))
    suite = ET.Element("testsuite", name=f"firebreak drill: {name}", tests=str(len(cases)),
                       failures=str(sum(1 for _, f, _ in cases if f)), errors="0",
                       time=f"{report.get('duration_s', 0):.3f}")
    for case, failure, text in cases:
        el = ET.SubElement(suite, "testcase", classname=f"drill.{name}", name=case, time="0")
        if failure:
            ET.SubElement(el, "failure", message=failure, type="objective-missed").text = failure
        else:
            ET.SubElement(el, "system-out").text = text
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True) + "\n"


def new_report_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """A fresh directory under root, named by UTC time and scenario, with root/latest pointing at
    it. Nothing is overwritten: a second drill in the same second gets a suffix."""
    import re

    now = now or datetime.now(timezone.utc)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "drill"
    base = f"{now:%Y%m%d-%H%M%S}-{slug}"
    root.mkdir(parents=True, exist_ok=True)
    directory, n = root / base, 1
    while directory.exists():
        n += 1
        directory = root / f"{base}-{n}"
    directory.mkdir()
    latest = root / "latest"
    tmp = root / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(directory.name)
    if latest.exists() and not latest.is_symlink():
        raise FileExistsError(f"{latest} exists and is not a link; move it away so `latest` can point at the newest "
                              "report")
    tmp.replace(latest)  # atomic: readers see the old report or the new one, never none
    return directory
