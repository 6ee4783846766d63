"""`firebreak claims`: pricing damage reports by a declared policy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from firebreak.cli.base import app, err, out
from firebreak.errors import InputError, Problem


claims_app = typer.Typer(no_args_is_help=True, help="Damage reports: pricing by a declared policy, verification "
                                                     "against the outage ledger.")
app.add_typer(claims_app, name="claims")


@claims_app.command("price")
def claims_price(
    reports: Path = typer.Argument(..., help="Reports as CSV (with a header) or JSON lines."),
    policy: Path = typer.Option(..., "--policy", help="Policy YAML, e.g. examples/kakao-2022-policy.yaml."),
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Outage ledger YAML/JSON: {outages: [...]}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write one priced row per report (CSV)."),
) -> None:
    """Price reports in bulk and flag the ones a reviewer must look at."""
    import csv as _csv

    from firebreak.claims.batch import FLAG_NAMES, price_batch
    from firebreak.claims.io import read_reports
    from firebreak.claims.ledger import load_ledger
    from firebreak.claims.policy import load_policy

    pol = load_policy(policy)
    outages = load_ledger(ledger) if ledger else []
    if output is not None and not output.parent.is_dir():
        raise InputError(Problem("--output", "", f"directory {output.parent} does not exist; create it first"))
    table, rows = read_reports(reports)
    t0 = time.perf_counter()
    priced = price_batch(pol, table, outages)
    took = time.perf_counter() - t0
    summary = priced.summary(pol)
    if not outages:
        out.print("[yellow]no --ledger: every report is flagged outside-outage and priced on 0 verified hours[/]")
    out.print(f"priced {summary['reports']:,} reports with policy {pol.name} in {took:.2f} s")
    out.print(f"  payout {summary['total_payout']:,} {pol.currency} to {summary['paid']:,} reports, goodwill to "
              f"{summary['goodwill']:,}, {summary['needs_review']:,} need review")
    out.print("  flags: " + ", ".join(f"{k} {v:,}" for k, v in summary["flagged"].items()))
    out.print("  by rule: " + ", ".join(f"{k} {v:,}" for k, v in summary["by_rule"].items()) +
              (f", no rule {summary['no_rule']:,}" if summary["no_rule"] else ""))
    if output is not None:
        with output.open("w", newline="", encoding="utf-8") as fh:
            w = _csv.writer(fh)
            w.writerow(["row", "id", "rule", "amount", "review", "goodwill", "verified_hours", "flags"])
            for i in range(len(table)):
                rule = pol.rules[priced.rule[i]].id if priced.rule[i] >= 0 else ""
                flags = "|".join(name for bit, name in FLAG_NAMES.items() if priced.flags[i] & bit)
                good = pol.rules[priced.rule[i]].goodwill if priced.goodwill[i] else ""
                w.writerow([i + 1, rows[i].get("id", ""), rule, int(priced.amount[i]), bool(priced.review[i]), good,
                            round(float(priced.hours[i]), 3), flags])
        err.print(f"wrote {output}")


