"""`firebreak claims`: pricing damage reports by a declared policy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from firebreak.cli.base import OutputFormat, app, err, out
from firebreak.errors import InputError, Problem


claims_app = typer.Typer(no_args_is_help=True, help="Damage reports: pricing by a declared policy, verification "
                                                     "against the outage ledger.")
app.add_typer(claims_app, name="claims")


@claims_app.command("price")
def claims_price(
    reports: Optional[Path] = typer.Argument(None, help="Reports as CSV (with a header) or JSON lines; "
                                                         "omit with --db to price the claims database."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy YAML (default: the Kakao 2022 scheme that "
                                                                 "ships with Firebreak, kakao-2022-policy.yaml)."),
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Outage ledger YAML/JSON: {outages: [...]}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write one priced row per report (CSV)."),
    db: bool = typer.Option(False, "--db", help="Price every report in the claims database (see --dsn)."),
    dsn: Optional[str] = typer.Option(None, "--dsn", envvar="FIREBREAK_CLAIMS_DSN",
                                      help="With --db: the database (libpq URL). Default: the running lab's."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs."),
) -> None:
    """Price reports in bulk (a file, or the database with --db) and flag the ones a reviewer must look at."""
    import csv as _csv

    from firebreak.claims.batch import FLAG_NAMES, price_batch
    from firebreak.claims.io import read_reports
    from firebreak.claims.ledger import load_ledger
    from firebreak.claims.policy import load_policy

    if policy is None:
        from firebreak.resources import example

        policy = example("kakao-2022-policy.yaml")
        err.print(f"policy: {policy.name} (the one that ships with Firebreak; --policy FILE for your own)")
    pol = load_policy(policy)
    outages = load_ledger(ledger) if ledger else []
    if output is not None and not output.parent.is_dir():
        raise InputError(Problem("--output", "", f"directory {output.parent} does not exist; create it first"))
    if (reports is None) == (not db):
        raise InputError(Problem("REPORTS", "", "give a reports file, or --db to price the database (not both)"))
    if db:
        import psycopg

        from firebreak.claims.io import read_database
        try:
            table, rows = read_database(_claims_dsn(dsn))
        except psycopg.OperationalError as e:
            _connect_error(e)
    else:
        table, rows = read_reports(reports)
    t0 = time.perf_counter()
    priced = price_batch(pol, table, outages)
    took = time.perf_counter() - t0
    summary = priced.summary(pol)
    if fmt == OutputFormat.json:
        import json
        import sys

        sys.stdout.write(json.dumps({"policy": pol.name, "currency": pol.currency, "seconds": round(took, 3),
                                     "ledger_outages": len(outages), **summary}, default=int) + "\n")
    else:
        _print_price_summary(pol, summary, took, outages)
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




_dsn_opt = typer.Option(None, "--dsn", envvar="FIREBREAK_CLAIMS_DSN",
                        help="The claims database (libpq URL). Default: the running lab's.")


def _claims_dsn(dsn: Optional[str]) -> str:
    if dsn:
        return dsn
    from firebreak.errors import LabError
    from firebreak.lab.state import load, load_secrets

    state = load()
    if state is None:
        raise LabError("no --dsn given and no lab running; pass --dsn postgresql://... or start `firebreak lab up`")
    return state.layout.dsn("claims", load_secrets(state.home).app)


def _connect_error(e: Exception) -> None:
    from firebreak.errors import OpsError
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise OpsError(f"cannot reach the claims database: {first}; check --dsn and that PostgreSQL is up") from e


user_app = typer.Typer(no_args_is_help=True, help="Reviewer accounts for the claims console (/review).")
claims_app.add_typer(user_app, name="user")


@user_app.command("add")
def claims_user_add(
    name: str = typer.Argument(..., help="Login name: lowercase letters, digits, '.', '_' or '-'."),
    role: str = typer.Option(..., "--role", help="reviewer (triage), approver (also approves and exports) or admin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    dsn: Optional[str] = _dsn_opt,
) -> None:
    """Create a reviewer (or set an existing one's role and password). There is no default
    password: it is asked for (twice) or read from standard input, and only its argon2 hash is stored."""
    import sys

    import psycopg

    from firebreak.claims.reviewers import add_user, check_new_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise InputError(Problem("--password-stdin", "", "no terminal to ask for a password on; "
                                                         "pipe it in with --password-stdin"))
    problems = check_new_user(name, role, password)
    if problems:
        raise InputError([Problem("user", "", p) for p in problems])
    target = _claims_dsn(dsn)
    try:
        new = add_user(target, name, role, password)
    except psycopg.OperationalError as e:
        _connect_error(e)
    out.print(f"{'created' if new else 'updated'} {role} '{name}'; they sign in at <site>/review/login")


@claims_app.command("export")
def claims_export(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="CSV file to write (default: standard output)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy YAML, for its currency."),
    dsn: Optional[str] = _dsn_opt,
) -> None:
    """Write the approved payouts as CSV for finance: receipt, reporter, amount, who approved it."""
    import psycopg
    from psycopg.rows import dict_row

    from firebreak.claims.settings import DEFAULT_POLICY
    from firebreak.claims.policy import load_policy
    from firebreak.claims.review import APPROVED_SQL, export_csv

    currency = load_policy(policy or DEFAULT_POLICY).currency
    if output is not None and not output.parent.is_dir():
        raise InputError(Problem("--output", "", f"directory {output.parent} does not exist; create it first"))
    target = _claims_dsn(dsn)
    try:
        with psycopg.connect(target, connect_timeout=5) as conn:
            rows = conn.cursor(row_factory=dict_row).execute(APPROVED_SQL).fetchall()
            conn.execute("INSERT INTO review_audit (who, action, detail, outcome) VALUES ('cli', 'export', %s, 'ok')",
                         (psycopg.types.json.Jsonb({"count": len(rows), "to": str(output or "stdout")}),))
    except psycopg.OperationalError as e:
        _connect_error(e)
    text = export_csv(rows, currency)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {len(rows):,} approved payout(s), {sum(r['amount'] or 0 for r in rows):,} {currency}, "
                  f"to {output}")


def _print_price_summary(pol, summary: dict, took: float, outages: list) -> None:
    if not outages:
        out.print("[yellow]no --ledger: every report is flagged outside-outage and priced on 0 verified hours[/]")
    out.print(f"priced {summary['reports']:,} reports with policy {pol.name} in {took:.2f} s")
    out.print(f"  payout {summary['total_payout']:,} {pol.currency} to {summary['paid']:,} reports, goodwill to "
              f"{summary['goodwill']:,}, {summary['needs_review']:,} need review")
    out.print("  flags: " + ", ".join(f"{k} {v:,}" for k, v in summary["flagged"].items()))
    out.print("  by rule: " + ", ".join(f"{k} {v:,}" for k, v in summary["by_rule"].items()) +
              (f", no rule {summary['no_rule']:,}" if summary["no_rule"] else ""))
