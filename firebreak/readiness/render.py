"""Readiness reports for people (text, Markdown, HTML) and programs (JSON)."""

from __future__ import annotations

import html
from datetime import datetime, timezone

from jinja2 import Environment, PackageLoader, select_autoescape
from rich.console import Console
from rich.table import Table
from rich.text import Text

from firebreak.readiness.analysis import FAILING_KINDS, Report, ScenarioResult

STATE_STYLE = {"up": "green", "degraded": "yellow", "down": "bold red"}
KIND_STYLE = {"data-loss": "bold red", "quorum-lost": "bold red", "unrecoverable": "bold red",
              "down": "red", "degraded": "yellow", "unmanageable": "magenta", "stranded": "magenta"}


def label(result: ScenarioResult) -> str:
    return "loss of " + " + ".join(result.lost)


def scenario_doc(r: ScenarioResult) -> dict:
    """One scenario as the JSON report has it (`check --format json`, docs/CLI.md). Findings are
    slotted dataclasses, which orjson writes natively, field by field."""
    return {"lost": r.lost, "failing": r.failing, "services": r.states, "findings": r.findings}


def _headline(r: ScenarioResult) -> str:
    counts = {}
    for f in r.findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    parts = [f"{n} {k}" for k, n in counts.items()]
    return ("FAIL" if r.failing else "ok") + (": " + ", ".join(parts) if parts else ": every service up")


def print_text(report: Report, console: Console, limit: int = 40) -> None:
    """A table per scenario, worst first; services that stay up are counted, not listed."""
    console.print(Text.assemble(("firebreak check ", "bold"), (report.topology, "bold cyan"),
                                f"  {len(report.sites)} sites, {len(report.services)} services, "
                                f"{len(report.scenarios)} scenarios"))
    for r in report.worst_first():
        console.print()
        head = Text.assemble((label(r).capitalize(), "bold"), "  ",
                             (_headline(r), "bold red" if r.failing else "green"))
        console.print(head)
        if not r.findings:
            continue
        table = Table(show_header=True, header_style="bold", expand=False, box=None, pad_edge=False)
        table.add_column("finding")
        table.add_column("service")
        table.add_column("state")
        table.add_column("why (dependency chain)", overflow="fold")
        for f in r.findings[:limit]:
            state = r.states[f.service]
            chain = " → ".join(f.path)
            table.add_row(Text(f.kind, KIND_STYLE.get(f.kind, "")), f.service,
                          Text(state, STATE_STYLE[state]),
                          f.reason + (f"  [{chain}]" if len(f.path) > 1 else ""))
        console.print(table)
        if len(r.findings) > limit:
            console.print(f"  … and {len(r.findings) - limit} more findings (use --format json for all)")
    s = report.summary
    console.print()
    verdict = Text("FAIL", "bold red") if s["verdict"] == "fail" else Text("PASS", "bold green")
    failing = ", ".join(" + ".join(x) for x in s["failing"]) or "none"
    console.print(Text.assemble("Verdict: ", verdict,
                                f"  ({s['failing_scenarios']} of {s['scenarios']} scenarios fail: {failing})"))


# The shareable formats are for people: a page with half a million findings helps nobody and
# takes seconds to write. They show every scenario, the services most often hurt, and the first
# findings of each scenario (the failing kinds come first); --format json has everything.
MATRIX_ROWS = 200
FINDINGS_SHOWN = 100


def _more(n: int) -> str:
    return f"… and {n} more findings (use --format json for all)"


def to_markdown(report: Report) -> str:
    out = [f"# Readiness: {report.topology}", "",
           f"{len(report.sites)} sites, {len(report.services)} services, {len(report.scenarios)} scenarios. "
           f"Verdict: **{report.summary['verdict'].upper()}**.", "",
           "| scenario | result | down | degraded | failing findings |", "|---|---|---|---|---|"]
    for r in report.worst_first():
        failing = sum(1 for f in r.findings if f.kind in FAILING_KINDS)
        out.append(f"| {label(r)} | {'FAIL' if r.failing else 'ok'} | {r.count('down')} | "
                   f"{r.count('degraded')} | {failing} |")
    for r in report.worst_first():
        if not r.findings:
            continue
        out += ["", f"## {label(r).capitalize()}", "", "| finding | service | state | why | chain |",
                "|---|---|---|---|---|"]
        for f in r.findings[:FINDINGS_SHOWN]:
            out.append(f"| {f.kind} | {f.service} | {r.states[f.service]} | {f.reason} | "
                       f"{' → '.join(f.path)} |")
        if len(r.findings) > FINDINGS_SHOWN:
            out += ["", _more(len(r.findings) - FINDINGS_SHOWN)]
    return "\n".join(out) + "\n"


def matrix_rows(report: Report, limit: int = MATRIX_ROWS) -> tuple[list[str], int]:
    """The services for the service x scenario matrix, and how many were left out: every service
    when they fit, else those hurt in the most scenarios (always-up services go first)."""
    if len(report.services) <= limit:
        return list(report.services), 0
    hurt: dict[str, int] = {}
    for r in report.scenarios:
        for name in r.reasons:
            hurt[name] = hurt.get(name, 0) + 1
    rows = sorted(hurt, key=lambda n: -hurt[n])[:limit]
    return rows, len(report.services) - len(rows)


_env = Environment(loader=PackageLoader("firebreak.readiness", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def to_html(report: Report) -> str:
    """One self-contained page: the service × scenario matrix coloured by state, then findings."""
    worst = report.worst_first()
    rows, hidden = matrix_rows(report)
    return _env.get_template("report.html").render(
        report=report, scenarios=report.scenarios, worst=worst, label=label, rows=rows, hidden=hidden,
        shown=FINDINGS_SHOWN, more=_more,
        failing_kinds=FAILING_KINDS, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        esc=html.escape)
