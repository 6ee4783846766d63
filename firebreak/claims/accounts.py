"""The operator's accounts: who pays what, uses which services, and (partners) sells how much an
hour. Payouts are priced from this file, never from what a reporter types.

The contract (CSV with a header, or Parquet with the same columns), one account a row:

    account,kind,monthly_fee,services,sales_per_hour
    u-1001,paid_user,3900,messenger;mail,
    u-1002,free_user,,messenger,
    p-2001,taxi_driver,,taxi;maps,18000

`kind` is one of the reporter kinds; `services` the services the account uses, separated by ';',
each one the policy's; numbers are whole won, empty where they do not apply to the kind. A number
is required where a policy rule for that kind and service prices with it (fee_percent: the
monthly fee; sales_percent: the sales per hour). A bad row stops the whole file, with its line
and field: nothing is loaded or credited from a file that is partly wrong.

Reading is columnar (polars): twenty million accounts are read and checked in seconds.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from firebreak.claims.models import MAX_AMOUNT, REPORTER_KINDS
from firebreak.claims.policy import Policy, rule_for
from firebreak.errors import InputError, Problem
from firebreak.inputs import suggest

COLUMNS = ("account", "kind", "monthly_fee", "services", "sales_per_hour")
NUMBERS = ("monthly_fee", "sales_per_hour")
MAX_PROBLEMS = 20
KINDS = pl.Enum(list(REPORTER_KINDS))


@dataclass
class Accounts:
    """Validated accounts. frame columns: account (str), kind (Enum of REPORTER_KINDS),
    monthly_fee and sales_per_hour (Int64, null where not given), services (Categorical: the
    ';'-separated list as written, each name checked against the policy; service_index numbers
    them densely for the columnar pricing)."""
    frame: pl.DataFrame
    label: str
    sha256: str | None = None
    service_lists: list[str] = field(default_factory=list)   # the distinct services cells, sorted
    service_index: np.ndarray | None = None                   # per account: its cell's index in service_lists

    def __len__(self) -> int:
        return self.frame.height


def services_of(value: str) -> list[str]:
    return [s.strip() for s in value.split(";") if s.strip()]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)  # releases the GIL: hashing runs beside the parser
    return h.hexdigest()


def read_accounts(path: Path | str, policy: Policy) -> Accounts:
    """Read and check an accounts file (CSV, or Parquet by its .parquet suffix)."""
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise InputError(Problem(label, "", "file not found; check the path" if not path.exists() else
                                 "is not a file"))
    digest: dict[str, str] = {}
    hasher = threading.Thread(target=lambda: digest.setdefault("sha256", file_sha256(path)), daemon=True)
    hasher.start()
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        raw = _read_parquet(path, label) if parquet else _read_csv(path, label)
    finally:
        hasher.join()
    accounts = check_accounts(raw, policy, label, first=1 if parquet else 2, where="row" if parquet else "line")
    accounts.sha256 = digest.get("sha256")
    return accounts


def _read_csv(path: Path, label: str) -> pl.DataFrame:
    try:
        header = pl.read_csv(path, n_rows=0, infer_schema_length=0).columns
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InputError(Problem(label, "line 1", f"not a readable CSV file: {_first_line(e)}")) from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(Problem(label, "line 1", f"missing columns: {', '.join(missing)} (an accounts file has "
                                                  f"{','.join(COLUMNS)})"))
    typed = {"account": pl.String, "kind": KINDS, "services": pl.Categorical,
             "monthly_fee": pl.Int64, "sales_per_hour": pl.Int64}
    try:
        # The fast path: numbers parsed as numbers. Only when a value does not parse is the file
        # read again as text, to name the line and field (polars' own message names neither).
        return pl.read_csv(path, columns=list(COLUMNS), schema_overrides=typed, infer_schema_length=0)
    except pl.exceptions.PolarsError:
        pass
    try:
        return pl.read_csv(path, columns=list(COLUMNS), infer_schema_length=0)
    except pl.exceptions.PolarsError as e:
        raise InputError(_ragged(path, label, len(header)) or
                         Problem(label, "", f"not a readable CSV file: {_first_line(e)}")) from None


def _ragged(path: Path, label: str, width: int) -> Problem | None:
    """The first row whose number of fields is not the header's (the slow path, on error only)."""
    import csv

    with path.open(encoding="utf-8", newline="", errors="replace") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if row and len(row) != width:
                return Problem(label, f"line {reader.line_num}",
                               f"has {len(row)} fields where the header has {width}; a value with a ',' needs "
                               "double quotes, and a number has no separators")
    return None


def _read_parquet(path: Path, label: str) -> pl.DataFrame:
    try:
        raw = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InputError(Problem(label, "", f"not a readable Parquet file: {_first_line(e)}")) from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(Problem(label, "", f"missing columns: {', '.join(missing)}"))
    raw = raw.select(COLUMNS)
    if isinstance(raw.schema["services"], pl.List):
        raw = raw.with_columns(pl.col("services").list.join(";"))
    return raw


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_accounts(raw: pl.DataFrame, policy: Policy, label: str, first: int = 2, where: str = "line") -> Accounts:
    """Pure: the rows of an accounts file (any column types) checked against the contract and the
    policy. Row i is `where first+i` in messages. Raises InputError naming each bad row's field.

    Every check is an expression, and all of them run in one columnar pass that finds nothing in
    a good file; only a bad file pays for finding the rows. Kinds and service lists have a
    handful of distinct values, each checked once."""
    problems: list[Problem] = []
    checks: list[tuple[pl.Expr, str, object]] = []

    def bad(expr: pl.Expr, field: str, why) -> None:
        checks.append((expr.fill_null(True), field, why))

    def run_checks() -> None:
        if not checks:
            return
        found = raw.select([e.any().alias(str(i)) for i, (e, _, _) in enumerate(checks)]).row(0)
        for hit, (expr, field, why) in zip(found, checks):
            if not hit or len(problems) >= MAX_PROBLEMS:
                continue
            rows = raw.with_row_index("_i").filter(expr).head(MAX_PROBLEMS - len(problems))
            for row in rows.iter_rows(named=True):
                problems.append(Problem(label, f"{where} {row['_i'] + first}", f"{field}: {why(row)}"))
        checks.clear()

    # account: present and once (taken as written: an id is compared byte for byte)
    account = pl.col("account").cast(pl.String)
    bad(account.is_null() | (account.str.len_bytes() == 0), "account", lambda r: "empty; every row needs the account's id")
    if _maybe_duplicated(raw["account"].cast(pl.String)):
        dup = raw.select(account.is_duplicated()).to_series()
        dups = raw.with_row_index("_i").filter(dup & raw["account"].is_not_null())
        seen: dict[str, int] = {}
        for row in dups.iter_rows(named=True):
            if row["account"] in seen and len(problems) < MAX_PROBLEMS:
                problems.append(Problem(label, f"{where} {row['_i'] + first}",
                                        f"account: '{row['account']}' is also on {where} "
                                        f"{seen[row['account']] + first}; one row per account"))
            seen.setdefault(row["account"], row["_i"])

    # kind: read as the Enum of kinds on the fast path (a bad kind sends the file to the text path)
    kind_ok = raw.schema["kind"] == KINDS
    kinds = {k: k for k in REPORTER_KINDS} if kind_ok else \
        {v: (v.strip() if isinstance(v, str) else v) for v in _distinct(raw["kind"])}
    if kind_ok:
        bad(pl.col("kind").is_null(), "kind", lambda r: f"empty; kinds are {', '.join(REPORTER_KINDS)}")
    elif [v for v, k in kinds.items() if k not in REPORTER_KINDS]:
        wrong_kind = [v for v, k in kinds.items() if k not in REPORTER_KINDS and v is not None]
        bad(pl.col("kind").cast(pl.String).is_in(wrong_kind) | pl.col("kind").is_null(), "kind",
            lambda r: f"unknown kind {_text(r['kind'])}{suggest(str(r['kind'] or ''), REPORTER_KINDS)}; kinds are "
                      f"{', '.join(REPORTER_KINDS)}")

    # services: each distinct value once
    services = pl.col("services").cast(pl.String)
    distinct = _distinct(raw["services"])
    wrong = {}
    for value in distinct:
        names = services_of(value) if value is not None else []
        if not names:
            wrong[value] = "empty; list the services the account uses, separated by ';'"
            continue
        unknown = [n for n in names if n not in policy.services]
        if unknown:
            wrong[value] = (f"service '{unknown[0]}' is not one of the policy's ({', '.join(policy.services)})"
                            f"{suggest(unknown[0], policy.services)}")
    if wrong:
        bad(services.is_null() | services.is_in([k for k in wrong if k is not None]), "services",
            lambda r: wrong[r["services"]])

    # numbers: whole won, 0 or more, empty where they do not apply
    numbers = {}
    for name in NUMBERS:
        col, dtype = pl.col(name), raw.schema[name]
        if dtype.is_integer():
            value = col.cast(pl.Int64)
        elif dtype == pl.String or dtype == pl.Categorical:
            text = col.cast(pl.String).str.strip_chars()
            value = text.replace("", None).cast(pl.Int64, strict=False)
            bad(text.is_not_null() & (text != "") & value.is_null(), name,
                lambda r, n=name: f"expected a whole number of won (no separators), got {_text(r[n])}")
        elif dtype == pl.Null:
            value = col.cast(pl.Int64)
        else:  # a Parquet float column: whole numbers only
            value = col.cast(pl.Int64, strict=False)
            bad(col.is_not_null() & (value.is_null() | (value.cast(dtype) != col)), name,
                lambda r, n=name: f"expected a whole number of won, got {_text(r[n])}")
        bad(value.is_not_null() & ((value < 0) | (value > MAX_AMOUNT)), name,
            lambda r, n=name: f"must be between 0 and {MAX_AMOUNT:,} won, got {r[n]}")
        numbers[name] = value
    run_checks()
    if problems:
        raise InputError(_by_line(problems))

    lists = sorted(v for v in distinct if v is not None)
    svc_col = raw["services"] if raw.schema["services"] == pl.Categorical else raw["services"].cast(pl.Categorical)
    frame = pl.DataFrame({
        "account": raw["account"].cast(pl.String),
        "kind": raw["kind"] if kind_ok else raw["kind"].cast(pl.String).replace_strict(kinds, return_dtype=KINDS),
        **{n: raw.select(numbers[n]).to_series() if not raw.schema[n] == pl.Int64 else raw[n] for n in NUMBERS},
        "services": svc_col,
    }).select(COLUMNS)
    accounts = Accounts(frame, label, None, lists, _codes(svc_col, lists))

    # a number a rule prices with must be there; which (kind, services) combinations lack it is
    # counted over their dense codes (a bincount), where a unique() of twenty million rows took
    # seconds
    width = max(len(lists), 1)
    combo = frame["kind"].to_physical().to_numpy().astype(np.int64) * width + accounts.service_index
    for name, field, what in (("monthly_fee", "fee_percent", "a share of the account's monthly fee"),
                              ("sales_per_hour", "sales_percent", "its declared sales per hour")):
        lacking = combo[frame[name].is_null().to_numpy()]
        need = []
        for c in np.flatnonzero(np.bincount(lacking, minlength=len(REPORTER_KINDS) * width)).tolist():
            kind_value, svc = REPORTER_KINDS[c // width], lists[c % width]
            rule = _pricing_rule(policy, kind_value, services_of(svc), field)
            if rule is not None:
                need.append((kind_value, svc, rule))
        for kind_value, svc, rule in need:
            mask = (pl.col("kind") == kind_value) & (pl.col("services") == svc) & pl.col(name).is_null()
            rows = frame.with_row_index("_i").filter(mask).head(MAX_PROBLEMS - len(problems))
            for row in rows.iter_rows(named=True):
                problems.append(Problem(label, f"{where} {row['_i'] + first}",
                                        f"{name}: empty, but rule '{rule}' pays a {kind_value} {what}; give it in "
                                        "whole won"))
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise InputError(_by_line(problems))
    return accounts


def _codes(column: pl.Series, lists: list[str]) -> np.ndarray:
    """A Categorical column of a few distinct (checked) values as dense indexes into `lists`,
    through its codes and a lookup table: one gather, where casting twenty million values by
    their text took seconds."""
    uniq = column.unique()
    codes = uniq.to_physical().to_numpy().astype(np.int64)
    # uint16 halves the memory of twenty million indexes; more spellings than it holds is rare,
    # not wrong (an export writing each account's services in its own order)
    dtype = np.uint16 if len(lists) <= np.iinfo(np.uint16).max + 1 else np.uint32
    lut = np.zeros(int(codes.max()) + 1 if len(codes) else 1, dtype=dtype)
    index = {text: i for i, text in enumerate(lists)}
    for code, text in zip(codes.tolist(), uniq.cast(pl.String).to_list()):
        lut[code] = index[text]
    return lut[column.to_physical().to_numpy()]


def _distinct(column: pl.Series) -> list:
    """The distinct values of a column (a few: kinds, service lists), as text or None."""
    if column.dtype == pl.Categorical:
        return column.unique().cast(pl.String).to_list()
    return column.cast(pl.String).unique().to_list()


def _maybe_duplicated(column: pl.Series) -> bool:
    """Whether an account id may be on two rows: exact for a sorted file (an export usually is),
    by 64-bit hashes otherwise (a collision only sends it to the exact check)."""
    if column.is_sorted():
        return bool((column == column.shift(1)).any())
    return column.hash().n_unique() != column.len()


def _by_line(problems: list[Problem]) -> list[Problem]:
    def line(p: Problem) -> int:
        tail = str(p.path).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0
    return sorted(problems, key=line)


def _pricing_rule(policy: Policy, kind: str, services: list[str], field: str) -> str | None:
    """The id of a rule that prices this kind of account, for one of its services, by `field`
    (with or without a report), or None."""
    for svc in services:
        for report in (True, False):
            i = rule_for(policy, kind, svc, report=report)
            if i >= 0 and getattr(policy.rules[i], field) is not None:
                return policy.rules[i].id
    return None


def _text(v: object) -> str:
    return "nothing" if v is None or v == "" else repr(v)


def pg_array(services: str) -> str:
    """A services cell as a PostgreSQL text[] literal, each name quoted."""
    return "{" + ",".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in services_of(services)) + "}"


LOAD_SQL = "COPY accounts (account, kind, monthly_fee, services, sales_per_hour) FROM STDIN (FORMAT csv)"


def load_into(conn, accounts: Accounts) -> int:
    """Replace the accounts table with these accounts, in one transaction (psycopg connection):
    readers see the old accounts or the new, never a mix. The file is the operator's whole
    snapshot, not a delta."""
    frame = accounts.frame
    literal = {v: pg_array(v) for v in accounts.service_lists}
    out = frame.select("account", pl.col("kind").cast(pl.String), "monthly_fee",
                       pl.col("services").cast(pl.String).replace_strict(literal, return_dtype=pl.String),
                       "sales_per_hour")
    with conn.transaction():
        conn.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        conn.execute("TRUNCATE accounts")
        with conn.cursor().copy(LOAD_SQL) as copy:
            for chunk in out.iter_slices(1_000_000):
                copy.write(chunk.write_csv(include_header=False).encode())
        conn.execute("INSERT INTO review_audit (who, action, detail, outcome) VALUES ('cli', 'accounts-load', %s, 'ok')",
                     (_jsonb({"accounts": len(accounts), "file": accounts.label, "sha256": accounts.sha256}),))
    return len(accounts)


def _jsonb(v: dict):
    from psycopg.types.json import Jsonb
    return Jsonb(v)
