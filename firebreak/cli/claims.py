"""`firebreak claims`: pricing damage reports by a declared policy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from firebreak.cli.base import OutputFormat, app, err, out
from firebreak.control.keys import PREFIX
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
    accounts: Optional[Path] = typer.Option(None, "--accounts", help="The operator's accounts (CSV or Parquet): fees "
                                                                     "and sales are priced from it, for reports that "
                                                                     "name an account."),
    credits: Optional[Path] = typer.Option(None, "--credits", help="A `claims credit --out` directory: a report from "
                                                                   "an account credited for that outage pays only "
                                                                   "the rest."),
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
    outages = load_ledger(ledger, max_open_hours=pol.max_open_hours) if ledger else []
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
    if accounts is not None:
        from firebreak.claims.accounts import read_accounts
        from firebreak.claims.io import attach_accounts

        known = attach_accounts(table, rows, read_accounts(accounts, pol))
        err.print(f"accounts: {known:,} of {len(rows):,} reports name an account on file")
    if credits is not None:
        _attach_credits(table, rows, credits)
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




def _attach_credits(table, rows: list[dict], directory: Path) -> None:
    import numpy as np
    import polars as pl

    from firebreak.claims.credit import already_credited, read_credits
    from firebreak.claims.io import _time

    if not directory.is_dir():
        raise InputError(Problem("--credits", "", f"{directory} is not a directory of credit batches"))
    lines, incidents = read_credits(directory)
    reports = pl.DataFrame({"i": range(len(rows)),
                            "account": [str(r.get("account") or "").strip() or None for r in rows],
                            "service": [str(r["service"]) for r in rows],
                            "start": [_time(str(r["window_start"])) for r in rows],
                            "end": [_time(str(r["window_end"])) for r in rows]},
                           schema={"i": pl.Int64, "account": pl.String, "service": pl.String, "start": pl.Float64,
                                   "end": pl.Float64})
    got = already_credited(lines, incidents, reports)
    table.credited = np.zeros(len(rows), dtype=np.int64)
    table.credited_goodwill = np.zeros(len(rows), dtype=bool)
    idx = got["i"].to_numpy()
    table.credited[idx] = got["credited"].to_numpy()
    table.credited_goodwill[idx] = got["credited_goodwill"].to_numpy()
    err.print(f"credits: {len(idx):,} report(s) from accounts already credited for that outage")


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


accounts_app = typer.Typer(no_args_is_help=True, help="The operator's accounts: fees, services and partners' sales "
                                                      "that payouts are priced from.")
claims_app.add_typer(accounts_app, name="accounts")


@accounts_app.command("load")
def claims_accounts_load(
    file: Path = typer.Argument(..., help="Accounts as CSV (header: account,kind,monthly_fee,services,sales_per_hour) "
                                          "or Parquet (.parquet) with the same columns."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy YAML whose kinds, services and rules the "
                                                                 "file is checked against (default: the shipped one)."),
    dsn: Optional[str] = _dsn_opt,
) -> None:
    """Replace the claims database's accounts with FILE, all or nothing: a bad row exits 2 naming
    its line and field, and nothing is loaded."""
    import psycopg

    from firebreak.claims.accounts import load_into, read_accounts
    from firebreak.claims.policy import load_policy
    from firebreak.claims.settings import DEFAULT_POLICY

    accounts = read_accounts(file, load_policy(policy or DEFAULT_POLICY))
    target = _claims_dsn(dsn)
    try:
        with psycopg.connect(target, connect_timeout=5) as conn:
            n = load_into(conn, accounts)
    except psycopg.OperationalError as e:
        _connect_error(e)
    except psycopg.errors.UndefinedTable as e:
        from firebreak.errors import OpsError
        raise OpsError("the claims database has no accounts table yet; its app applies the schema when it starts "
                       "(or run the lab's migrations), then load again") from e
    out.print(f"loaded {n:,} accounts from {file} (sha256 {accounts.sha256[:12]}…), replacing the previous ones")


@claims_app.command("credit")
def claims_credit(
    policy: Path = typer.Option(..., "--policy", help="Policy YAML: the rules that price each kind of account."),
    accounts: Path = typer.Option(..., "--accounts", help="The accounts file (CSV or Parquet): "
                                                          "account,kind,monthly_fee,services,sales_per_hour."),
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Outage ledger YAML/JSON; default: the agents' "
                                                                 "ledger in etcd."),
    out_dir: Path = typer.Option(..., "--out", help="The batches directory: earlier batches there are read, "
                                                    "and only what they did not pay is paid, in a new batch."),
    etcd: list[str] = typer.Option(None, "--etcd", help="Without --ledger: etcd client URL(s); default: the lab's."),
    etcd_access: Optional[Path] = typer.Option(None, "--etcd-access", help="A locked etcd: an access file; default: "
                                                                           "the lab's claims role."),
    prefix: str = typer.Option(PREFIX, "--prefix", help="Without --ledger: Firebreak's etcd key prefix."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text for people, json for programs."),
) -> None:
    """Credit every account an outage affected, without a claim: paid users by the policy's fee
    rule, free users the goodwill item, partners by their declared sales per hour. Each run
    writes a new batch DIR/<batch id>.csv (and .parquet, .json manifest, .held.csv) and pays only
    what earlier batches in DIR did not."""
    import secrets

    from firebreak.claims import credit
    from firebreak.claims.accounts import read_accounts
    from firebreak.claims.policy import load_policy

    t0 = time.time()
    pol = load_policy(policy)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(Problem("--out", "", f"{out_dir} is a file; give a directory for the batches"))
    if not out_dir.parent.is_dir():
        raise InputError(Problem("--out", "", f"directory {out_dir.parent} does not exist; create it first"))
    now = time.time()
    if ledger is not None:
        from firebreak.claims.accounts import file_sha256
        from firebreak.claims.ledger import read_ledger

        read = read_ledger(ledger, now, pol.max_open_hours)
        source = {"source": "file", "file": str(ledger), "sha256": file_sha256(ledger)}
    else:
        read, source = _etcd_ledger(etcd, etcd_access, prefix, now, pol.max_open_hours)
    acc = read_accounts(accounts, pol)
    manifest = credit.run(pol, policy, acc, read, source, out_dir, now, secrets.token_hex(3))
    took = time.time() - t0
    if fmt == OutputFormat.json:
        import json
        import sys

        sys.stdout.write(json.dumps({**manifest, "seconds": round(took, 3)}) + "\n")
        return
    t = manifest["totals"]
    for note in manifest["ledger"]["notes"]:
        err.print(f"[yellow]ledger: {note}[/]")
    out.print(f"batch {manifest['batch']}: {t['amount']:,} {pol.currency} to {t['accounts']:,} accounts, "
              f"goodwill to {t['goodwill']:,}; {len(manifest['incidents'])} incident(s) from "
              f"{manifest['ledger']['outages']} outage(s), {len(acc):,} accounts read, in {took:.1f} s")
    if t["already_paid"]:
        out.print(f"  earlier batches ({len(manifest['earlier_batches'])}) already paid {t['already_paid']:,} "
                  f"{pol.currency} of the {t['entitled']:,} these incidents are worth")
    if t["held_lines"]:
        out.print(f"  held for a person (above a rule's review_over, not paid): {t['held_lines']:,} lines, "
                  f"{t['held_amount']:,} {pol.currency}")
    out.print(f"  {out_dir / manifest['files']['csv']['name']} (+ .parquet, .json manifest); a reviewer approves "
              "the batch as a whole")


def _etcd_ledger(etcd, etcd_access, prefix: str, now: float, max_open_hours: float):
    from firebreak.claims.ledger import read_entries

    entries, source = _etcd_entries(etcd, etcd_access, prefix)
    return read_entries(entries, now, max_open_hours), source


def _etcd_entries(etcd, etcd_access, prefix: str) -> tuple[list, dict]:
    """The agents' ledger in etcd as (key, value) pairs (a value that is not JSON: None, for the
    reader to flag), and where it came from."""
    import asyncio

    from firebreak.control.etcd import OPEN, Etcd, EtcdAccess, EtcdError
    from firebreak.control.keys import Keys

    if not etcd:
        from firebreak.lab import lab
        st = lab.status()
        etcd = st["etcd_endpoints"]
        if etcd_access is None:
            try:
                etcd_access = Path(st["etcd_access"]["roles"]["claims"]["access_file"])
            except (KeyError, TypeError):
                etcd_access = None  # an open etcd
    try:
        access = EtcdAccess.from_file(etcd_access) if etcd_access else OPEN
    except EtcdError as e:
        raise InputError(Problem("--etcd-access", "", str(e))) from None
    keys = Keys(prefix)

    async def read() -> list:
        client = Etcd(list(etcd), timeout=3, access=access)
        try:
            return await client.get_prefix(keys.ledger)
        finally:
            await client.close()
    try:
        kvs = asyncio.run(read())
    except EtcdError as e:
        from firebreak.errors import OpsError
        raise OpsError(f"cannot read the agents' ledger from etcd ({e}); check --etcd, or give --ledger FILE") from e
    entries = []
    for kv in kvs:
        try:
            entries.append((kv.key, kv.json()))
        except ValueError:
            entries.append((kv.key, None))   # flagged by read_entries, not a crash
    import hashlib
    import json

    # What was read, as a digest a reviewer can match against the ledger at the same revision.
    digest = hashlib.sha256(json.dumps([[kv.key, kv.value, kv.mod_revision] for kv in kvs]).encode()).hexdigest()
    return entries, {"source": "etcd", "endpoints": list(etcd), "prefix": keys.ledger, "entries": len(entries),
                     "sha256": digest}


@claims_app.command("postmortem")
def claims_postmortem(
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Outage ledger YAML/JSON; default: the agents' "
                                                                 "ledger in etcd."),
    drill_reports: Optional[Path] = typer.Option(None, "--drill-reports", help="A directory searched for drills' "
                                                                               "report.json files (or one such file)."),
    incident: Optional[str] = typer.Option(None, "--incident", help="One incident: its id as on the status page "
                                                                    "(123 or incident-123). Default: every one."),
    since: Optional[str] = typer.Option(None, "--since", help="Incidents and drills overlapping this time or later "
                                                              "(epoch seconds or ISO 8601 with a zone)."),
    until: Optional[str] = typer.Option(None, "--until", help="... and this time or earlier."),
    credits: Optional[Path] = typer.Option(None, "--credits", help="A `claims credit --out` directory: accounts "
                                                                   "credited and the total, per incident."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy YAML, for max_open_hours and the currency "
                                                                 "(default: the shipped one)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="File to write (default: standard output)."),
    fmt: str = typer.Option("md", "--format", help="md (Markdown) to share, json for programs: the same report."),
    etcd: list[str] = typer.Option(None, "--etcd", help="Without --ledger: etcd client URL(s); default: the lab's."),
    etcd_access: Optional[Path] = typer.Option(None, "--etcd-access", help="A locked etcd: an access file; default: "
                                                                           "the lab's claims role."),
    prefix: str = typer.Option(PREFIX, "--prefix", help="Without --ledger: Firebreak's etcd key prefix."),
) -> None:
    """A post-incident report (Markdown) from the ledger, the drill reports and the credit batches:
    what failed, what the control plane decided and when, what each service saw, what was paid."""
    from firebreak.claims.policy import load_policy
    from firebreak.claims.postmortem import markdown, postmortem
    from firebreak.claims.settings import DEFAULT_POLICY

    if fmt not in ("md", "json"):
        raise InputError(Problem("--format", "", f"{fmt!r}: give md (Markdown) or json"))
    pol = load_policy(policy or DEFAULT_POLICY)
    wanted = _incident_id(incident) if incident is not None else None
    lo, hi = _when("--since", since), _when("--until", until)
    if wanted is not None and (lo is not None or hi is not None):
        raise InputError(Problem("--incident", "", "give one incident or a time range (--since/--until), not both"))
    if out_file is not None and not out_file.parent.is_dir():
        raise InputError(Problem("--out", "", f"directory {out_file.parent} does not exist; create it first"))
    drills = _drill_reports(drill_reports) if drill_reports is not None else []
    paid = _credited_per_incident(credits) if credits is not None else None
    if ledger is not None:
        entries, source = _ledger_file_entries(ledger), f"ledger file {ledger}"
    else:
        entries, where = _etcd_entries(etcd, etcd_access, prefix)
        source = f"the agents' ledger in etcd ({where['prefix']} at {', '.join(where['endpoints'])})"
    if drills:
        source += f", {len(drills)} drill report(s)"
    if credits is not None:
        source += f", credit batches in {credits}"
    report = postmortem(entries, time.time(), pol.max_open_hours, source=source, drills=drills, credits=paid,
                        incident=wanted, since=lo, until=hi, currency=pol.currency)
    if fmt == "json":
        import dataclasses
        import json

        text = json.dumps(dataclasses.asdict(report), ensure_ascii=False) + "\n"
    else:
        text = markdown(report)
    if out_file is None:
        typer.echo(text, nl=False)
    else:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"wrote {out_file}")


def _incident_id(value: str) -> int:
    raw = value.strip().removeprefix("#").removeprefix("incident-")
    if not raw.isdigit():
        raise InputError(Problem("--incident", "", f"{value!r} is not an incident id: the whole number on the "
                                                   "status page (incident-1665814740), or omit it for every incident"))
    return int(raw)


def _when(flag: str, value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    from firebreak.claims.io import _time
    try:
        return _time(value)
    except ValueError as e:
        raise InputError(Problem(flag, "", f"{value!r}: {e}; give epoch seconds or ISO 8601 with a zone, "
                                           "e.g. 2022-10-15T15:19:00+09:00")) from None


def _ledger_file_entries(path: Path) -> list[tuple[str, dict]]:
    """A ledger file's entries as the agents' would read in etcd: the same keys as
    ledger.read_ledger gives them, with every field an entry carries (kind, cause, detail,
    failover: the words the postmortem quotes)."""
    from datetime import datetime

    from firebreak.claims.ledger import LedgerFile
    from firebreak.inputs import load_yaml_model

    def _ts(v) -> float:
        return v.timestamp() if isinstance(v, datetime) else float(v)

    spec, _ = load_yaml_model(path, LedgerFile)
    entries = []
    for o in spec.outages:
        start = _ts(o.start)
        entries.append((o.id or f"{o.service}@{start:.3f}",
                        {**(o.model_extra or {}), "service": o.service, "start": start,
                         "end": None if o.end is None else _ts(o.end), "site": o.site, "source": o.source}))
    return entries


def _drill_reports(path: Path) -> list:
    """Every report.json under `path` (or `path` itself), parsed; a bad one exits 2 naming it."""
    import json

    from firebreak.claims.postmortem import DrillReport

    if path.is_file():
        files = [path]
    elif path.is_dir():
        # `latest` is a link to one of the others (drill/report.new_report_dir): read each report once.
        files = sorted({p.resolve(): p for p in path.rglob("report.json")}.values())
        if not files:
            raise InputError(Problem("--drill-reports", "", f"no report.json under {path}; give the directory "
                                                            "`firebreak drill` wrote its reports in"))
    else:
        raise InputError(Problem("--drill-reports", "", f"{path} does not exist"))
    reports = []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(Problem(str(f), "", f"cannot read: {e.strerror}")) from None
        except ValueError as e:
            raise InputError(Problem(str(f), "", f"not JSON ({e}); is it a `firebreak drill` report.json?")) from None
        reports.append(DrillReport.from_doc(str(f), doc))
    return reports


def _credited_per_incident(directory: Path) -> dict[int, tuple[int, int]]:
    """Accounts credited and the total per incident, from the batches (as the status page counts them)."""
    if not directory.is_dir():
        raise InputError(Problem("--credits", "", f"{directory} is not a directory of credit batches"))
    import polars as pl

    from firebreak.claims.credit import read_paid

    lines, _ = read_paid(directory)
    if lines is None:
        return {}
    per = lines.group_by("incident").agg(pl.col("account").n_unique().alias("n"),
                                         pl.col("amount").fill_null(0).sum().alias("total"))
    return {int(r["incident"]): (int(r["n"]), int(r["total"])) for r in per.iter_rows(named=True)}
