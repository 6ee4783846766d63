"""Reading report files for bulk pricing (CSV or JSON lines), with errors that name the line."""

from __future__ import annotations

import csv
import json
import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np

from firebreak.claims.batch import ReportTable
from firebreak.claims.models import REPORTER_KINDS
from firebreak.errors import InputError, Problem
from firebreak.inputs import suggest

def contact_key(contact: object) -> int:
    """A 64-bit key per contact for duplicate detection. A 32-bit CRC made about a hundred false
    pairs per million contacts (the birthday bound); 64 bits of BLAKE2b make one in ~10^7 runs."""
    digest = hashlib.blake2b(str(contact).strip().lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


REQUIRED = ("reporter_kind", "service", "window_start", "window_end", "claimed_amount", "contact")
MAX_PROBLEMS = 20


def _time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2022-10-15T15:19:00+09:00")
    return dt.timestamp()


def read_reports(path: Path) -> tuple[ReportTable, list[dict]]:
    """Rows of a CSV (header line) or JSON-lines file as columns; also the raw rows (ids, contacts)."""
    label = str(path)
    try:
        fh = path.open(encoding="utf-8", newline="")
    except OSError as e:
        raise InputError(Problem(label, "", f"cannot read: {e.strerror}")) from None
    with fh:
        if path.suffix in (".jsonl", ".ndjson", ".json"):
            rows = []
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise InputError(Problem(label, f"line {n}", f"not JSON: {e.msg}")) from None
            first_line = 1
        else:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(Problem(label, "line 1", f"missing columns: {', '.join(missing)}"))
            rows = list(reader)
            first_line = 2
    return table_from_rows(rows, label, first_line), rows


def read_database(dsn: str) -> tuple[ReportTable, list[dict]]:
    """Every report in the claims database, as pricing's columns."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, connect_timeout=5) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            "SELECT id, receipt, reporter_kind, service, window_start, window_end, claimed_amount, contact, "
            "account, array_to_string(evidence, ',') AS evidence FROM reports ORDER BY id").fetchall()
    for r in rows:
        r["window_start"], r["window_end"] = r["window_start"].isoformat(), r["window_end"].isoformat()
    return table_from_rows(rows, "database", 1, where="report id", key="id"), rows


def table_from_rows(rows: list[dict], label: str, first_line: int, where: str = "line",
                    key: str | None = None) -> ReportTable:
    problems: list[Problem] = []
    kinds, services, starts, ends, claimed, contacts, evidence = [], [], [], [], [], [], []
    service_names: dict[str, int] = {}
    place = where
    for i, row in enumerate(rows):
        where = f"{place} {row[key] if key else i + first_line}"
        try:
            kind = str(row["reporter_kind"])
            if kind not in REPORTER_KINDS:
                raise ValueError(f"reporter_kind: unknown kind '{kind}'{suggest(kind, REPORTER_KINDS)}")
            start, end = _time(str(row["window_start"])), _time(str(row["window_end"]))
            if end <= start:
                raise ValueError("window_end must be after window_start")
            amount = int(row["claimed_amount"])
            if amount < 0:
                raise ValueError(f"claimed_amount must be 0 or more, got {amount}")
        except KeyError as e:
            problems.append(Problem(label, where, f"missing field {e.args[0]}"))
        except ValueError as e:
            problems.append(Problem(label, where, str(e)))
        else:
            kinds.append(REPORTER_KINDS.index(kind))
            services.append(service_names.setdefault(str(row["service"]), len(service_names)))
            starts.append(start)
            ends.append(end)
            claimed.append(amount)
            contacts.append(report_key(row))
            evidence.append(1 if str(row.get("evidence") or "").strip() else 0)
        if len(problems) >= MAX_PROBLEMS:
            problems.append(Problem(label, "", f"stopped after {MAX_PROBLEMS} problems"))
            break
    if problems:
        raise InputError(problems)
    return ReportTable(np.array(kinds, dtype=np.int64), np.array(services, dtype=np.int64), list(service_names),
                        np.array(starts), np.array(ends), np.array(claimed, dtype=np.int64),
                        np.array(contacts, dtype=np.int64), None, np.array(evidence, dtype=np.int64), ["receipt"])


def report_key(row: dict) -> int:
    """Whose claim a report is, for duplicates: its account where it names one, else its contact."""
    account = str(row.get("account") or "").strip()
    return contact_key("account:" + account) if account else contact_key(row["contact"])


def attach_accounts(table: ReportTable, rows: list[dict], accounts) -> int:
    """Fill the table's fee, sales and kind from the operator's accounts (accounts.Accounts) for
    the reports that name an account on file; returns how many do. A typed plan price and a
    typed reporter kind give way to the operator's record."""
    import polars as pl

    from firebreak.claims.batch import NONE

    ids = pl.DataFrame({"account": [str(r.get("account") or "").strip() or None for r in rows]},
                       schema={"account": pl.String})
    found = ids.join(accounts.frame, on="account", how="left", maintain_order="left")
    known = found["kind"].is_not_null().to_numpy()
    table.monthly_fee = found["monthly_fee"].fill_null(NONE).to_numpy().astype(np.int64)
    table.sales_per_hour = found["sales_per_hour"].fill_null(NONE).to_numpy().astype(np.int64)
    kinds = found["kind"].to_physical().fill_null(-1).to_numpy()
    table.kind = np.where(known, kinds, table.kind).astype(np.int64)
    return int(known.sum())
