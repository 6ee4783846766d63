"""Compensation without a claim: from the ledger's measured outages and the operator's accounts,
what every affected account is owed, less what earlier batches already paid.

- The ledger's outages are grouped into incidents (outages that overlap, of any services): an
  account is credited once per incident, for the hours any of its services was out, so a user
  of messenger and mail is not paid the same hour twice.
- Each (kind, service) of an account is priced by the first policy rule that needs no report
  (policy.rule_for(report=False)): paid users by the fee rule (the outage's share of the billing
  period), partners by their declared sales per hour, free users the goodwill item.
- Batches are the record of what was paid: a line is (account, incident, amount, goodwill). A
  new run pays, per account and incident, what the policy says now minus what every batch in the
  directory already paid; an outage that grew pays the difference, and nothing is paid twice.
  A line above a rule's review_over is held (written apart, not paid) for a person.

The computation is columnar (numpy over the accounts, one pass per incident and rule), so twenty
million accounts take seconds; the decisions are the policy's, in policy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from firebreak.claims.accounts import Accounts, services_of
from firebreak.claims.ledger import ANY_SERVICE, Incident, union
from firebreak.claims.policy import Policy, hourly_sales, prorated_fee, rule_for
from firebreak.claims.verify import Credited
from firebreak.errors import InputError, Problem

BATCH_RE = re.compile(r"^(credit-\d{8}T\d{6}Z-[0-9a-f]{6})\.csv$")
LINE_COLUMNS = ("account", "amount", "goodwill", "incident", "rule")
LINE_SCHEMA = {"account": pl.String, "amount": pl.Int64, "goodwill": pl.String, "incident": pl.Int64,
               "rule": pl.String}


@dataclass(frozen=True)
class Term:
    """What one (kind, services) combination of accounts is owed for one incident by one rule."""
    rule: int
    hours: float


@dataclass
class Owed:
    """Per (account, incident) lines: `lines` to pay now, `held` above a review threshold."""
    lines: pl.DataFrame
    held: pl.DataFrame
    entitled: int = 0         # won the policy gives for these incidents in full
    already_paid: int = 0     # won earlier batches paid for them
    by_rule: dict[str, int] = field(default_factory=dict)
    accounts: int = 0         # accounts paid now


def hours_out(incident: Incident, services: set[str]) -> float:
    """Hours during which any of `services` was out in the incident."""
    spans = union((o.start, o.end) for o in incident.outages if o.service in services or o.service == ANY_SERVICE)
    return sum(e - s for s, e in spans) / 3600.0


def terms(policy: Policy, kind: str, services: list[str], incident: Incident) -> list[Term]:
    """Pure: the rules that credit an account of this kind and these services for the incident,
    each with the hours it counts (the union of its services' outages)."""
    by_rule: dict[int, set[str]] = {}
    for svc in services:
        i = rule_for(policy, kind, svc, report=False)
        if i >= 0:
            by_rule.setdefault(i, set()).add(svc)
    out = []
    for i, svcs in sorted(by_rule.items()):
        h = hours_out(incident, svcs)
        if h > policy.rules[i].min_downtime_hours:
            out.append(Term(i, h))
    return out


def entitlements(policy: Policy, accounts: Accounts, incidents: list[Incident]) -> pl.DataFrame:
    """Pure: per affected (account, incident), what the policy gives in full: amount (won),
    goodwill (the item, or null), rule (ids, ';'-joined), held (a rule's review_over exceeded).

    Accounts of one kind and one list of services ("a combination": a handful in a real base)
    are priced alike but for their own fee or sales: the rules and hours are worked out once per
    combination, and only the accounts a money rule applies to are computed one by one, on the
    subset (the goodwill item, most of a user base, costs one comparison per account)."""
    frame = accounts.frame
    n = frame.height
    svc_names = accounts.service_lists
    kind_names = frame.schema["kind"].categories.to_list()
    width = max(len(svc_names), 1)
    combo = frame["kind"].to_physical().to_numpy().astype(np.int32) * width + accounts.service_index
    fee_col, sales_col = frame["monthly_fee"], frame["sales_per_hour"]
    # the combinations some account has (a bincount, not a sort of every account): a few dozen
    # usually, but a file may spell its services lists 70,000 ways, and every possible pair of
    # kind and list then took seconds per incident in Python
    present = np.flatnonzero(np.bincount(combo, minlength=len(kind_names) * width)).tolist() if n else []
    parts = []
    for inc in incidents:
        slots: list[tuple[np.ndarray, np.ndarray]] = []   # per slot: rule and hours per combination
        for c in present:
            k, v = divmod(c, width)
            for j, t in enumerate(terms(policy, kind_names[k], services_of(svc_names[v]), inc) if svc_names else []):
                while len(slots) <= j:
                    slots.append((np.full(len(kind_names) * width, -1, dtype=np.int16),
                                  np.zeros(len(kind_names) * width)))
                slots[j][0][c], slots[j][1][c] = t.rule, t.hours
        if not slots:
            continue
        amount = np.zeros(n, dtype=np.int64)
        mask = np.zeros(n, dtype=np.int64)     # bit i: rule i credited this account
        gift = np.full(n, -1, dtype=np.int8 if len(policy.rules) < 127 else np.int16)
        held = np.zeros(n, dtype=bool)
        for rule_of, hours_of in slots:
            rule = rule_of[combo]
            for i in np.unique(rule_of[rule_of >= 0]).tolist():
                r = policy.rules[i]
                sel = np.flatnonzero(rule == i) if r.goodwill is None else None
                if sel is not None and not len(sel):
                    continue
                if r.goodwill is not None:   # most of a user base: whole-column operations, no indexing
                    on = rule == i
                    mask |= on.astype(np.int64) << i
                    gift = np.where(on & (gift < 0), gift.dtype.type(i), gift)
                    continue
                mask[sel] |= 1 << i
                h = hours_of[combo[sel]]
                if r.flat is not None:
                    value = np.full(len(sel), r.flat, dtype=np.int64)
                elif r.per_hour is not None:
                    value = np.rint(r.per_hour * h).astype(np.int64)
                elif r.fee_percent is not None:
                    fee = fee_col.gather(sel).fill_null(0).to_numpy().astype(np.float64)
                    value = np.rint(prorated_fee(fee, r.fee_percent, h, policy.billing_period_days)).astype(np.int64)
                else:
                    sales = sales_col.gather(sel).fill_null(0).to_numpy().astype(np.float64)
                    value = np.rint(hourly_sales(sales, r.sales_percent, h)).astype(np.int64)
                if r.minimum is not None:
                    value = np.maximum(value, r.minimum)
                value = np.minimum(value, r.cap)
                amount[sel] += value
                held[sel] |= value > r.review_over
        hit = (mask != 0) & ((amount > 0) | (gift >= 0))
        every = bool(hit.all())
        idx = np.arange(n, dtype=np.int64) if every else np.flatnonzero(hit)
        pick = (lambda a: a) if every else (lambda a: a[idx])
        parts.append(pl.DataFrame({"row": idx, "amount": pick(amount), "gift": pick(gift),
                                   "incident": np.full(len(idx), inc.id, dtype=np.int64), "mask": pick(mask),
                                   "held": pick(held)}))
    if not parts:
        return pl.DataFrame(schema={"row": pl.Int64, "amount": pl.Int64, "goodwill": pl.String, "incident": pl.Int64,
                                    "rule": pl.String, "held": pl.Boolean})
    ent = pl.concat(parts) if len(parts) > 1 else parts[0]
    # Codes to names once, as Enums from their codes: twenty million goodwill items are one string.
    masks = sorted(ent["mask"].unique().to_list())
    rule_names = pl.Enum([";".join(policy.rules[i].id for i in range(len(policy.rules)) if m >> i & 1)
                          for m in masks])
    texts = sorted({r.goodwill for r in policy.rules if r.goodwill is not None}) or ["-"]
    text_of_rule = np.array([texts.index(r.goodwill) if r.goodwill is not None else 0 for r in policy.rules],
                            dtype=np.uint32)
    gift_names = pl.Enum(texts)
    gift_code = pl.Series(text_of_rule[np.maximum(ent["gift"].to_numpy(), 0)])
    lut = np.zeros(max(masks) + 1, dtype=np.uint32) if max(masks) < 1 << 20 else None
    if lut is not None:
        lut[masks] = np.arange(len(masks), dtype=np.uint32)
        mask_code = pl.Series(lut[ent["mask"].to_numpy()])
    else:   # more than 20 rules: rare, and a binary search is fine
        mask_code = pl.Series(np.searchsorted(np.array(masks), ent["mask"].to_numpy()).astype(np.uint32))
    return ent.select(
        "row", "amount",
        goodwill=pl.when(pl.col("gift") >= 0).then(gift_code.cat.to(gift_names)),
        incident="incident", rule=mask_code.cat.to(rule_names), held="held")


def with_accounts(lines: pl.DataFrame, accounts: Accounts) -> pl.DataFrame:
    """Lines keyed by row, with each row's account id (taken, not copied, when every row is there
    in order: the usual first run over a whole user base)."""
    ids = accounts.frame["account"]
    every = lines.height == ids.len() and lines["row"].is_sorted() and \
        (lines.height == 0 or (lines["row"][0] == 0 and lines["row"][-1] == ids.len() - 1))
    return lines.with_columns(account=ids if every else ids.gather(lines["row"]))


def remap_incidents(paid: pl.DataFrame, incidents: list[Incident]) -> pl.DataFrame:
    """An incident is named by its start; when it grows into another, the other's payments count
    for it: a paid incident id inside a current incident's span is that incident's."""
    ids = paid["incident"].unique().to_list()
    moved = {}
    for old in ids:
        for inc in incidents:
            if int(inc.start) <= old <= inc.end and old != inc.id:
                moved[old] = inc.id
    return paid.with_columns(pl.col("incident").replace(moved)) if moved else paid


def owed(policy: Policy, accounts: Accounts, incidents: list[Incident], paid: pl.DataFrame | None) -> Owed:
    """Pure: what to pay now, given what earlier batches paid (`paid`: their lines)."""
    ent = entitlements(policy, accounts, incidents)
    entitled = int(ent["amount"].sum())
    already = 0
    if paid is not None and paid.height:
        rows = accounts.frame.select("account").with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        p = (remap_incidents(paid, incidents)
             .group_by("account", "incident")
             .agg(paid=pl.col("amount").sum(), paid_goodwill=pl.col("goodwill").is_not_null().any())
             .join(rows, on="account").drop("account"))
        ent = ent.join(p, on=["row", "incident"], how="left", maintain_order="left")
        ent = ent.with_columns(pl.col("paid").fill_null(0), pl.col("paid_goodwill").fill_null(False))
        already = int(ent["paid"].sum())
        ent = ent.with_columns(
            amount=pl.max_horizontal(pl.col("amount") - pl.col("paid"), pl.lit(0)),
            goodwill=pl.when(pl.col("paid_goodwill")).then(None).otherwise(pl.col("goodwill")),
        ).filter((pl.col("amount") > 0) | pl.col("goodwill").is_not_null())
    if ent["held"].any():
        held, lines = ent.filter(pl.col("held")), ent.filter(~pl.col("held"))
    else:
        held, lines = ent.clear(), ent
    held = with_accounts(held, accounts).select(LINE_COLUMNS)
    lines = with_accounts(lines, accounts).select(LINE_COLUMNS)
    accounts_paid = (lines.height if len(incidents) == 1 else lines["account"].n_unique()) if lines.height else 0
    by_rule = {r: int(a) for r, a in lines.group_by("rule").agg(pl.col("amount").sum()).iter_rows()} \
        if lines.height else {}
    return Owed(lines, held, entitled, already, by_rule, accounts_paid)


def batch_files(directory: Path) -> list[Path]:
    """The batches in a directory, oldest first (the name starts with its time)."""
    return sorted(p for p in directory.iterdir() if BATCH_RE.match(p.name)) if directory.is_dir() else []


def read_paid(directory: Path) -> tuple[pl.DataFrame | None, list[Path]]:
    """Every line every batch in the directory paid (a batch's CSV is what payment systems got)."""
    files = batch_files(directory)
    frames = []
    for f in files:
        try:
            frame = pl.read_csv(f, columns=["account", "amount", "goodwill", "incident"],
                                schema_overrides={k: LINE_SCHEMA[k] for k in ("account", "amount", "goodwill",
                                                                            "incident")})
        except (pl.exceptions.PolarsError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(Problem(str(f), "", f"an earlier batch that cannot be read ({first}); what it paid "
                                                 "is unknown, so nothing more is paid until it is repaired")) from None
        frames.append(frame)
    return (pl.concat(frames) if frames else None), files


def credited_for(lines: pl.DataFrame, incidents: dict[int, tuple[float, float, set[str]]], account: str,
                 service: str, start: float, end: float, batch_of: dict[int, str] | None = None) -> Credited:
    """Pure: what batches credited `account` for the outage a report (service, window) is about:
    lines of incidents whose span overlaps the window and which took the service down.
    `incidents`: id -> (start, end, services) from the batches' manifests."""
    mine = lines.filter(pl.col("account") == account)
    amount, goodwill, batches = 0, False, []
    for row in mine.iter_rows(named=True):
        span = incidents.get(row["incident"])
        if span is None:
            continue
        s, e, services = span
        if s < end and start < e and (service in services or ANY_SERVICE in services):
            amount += int(row["amount"] or 0)
            goodwill = goodwill or row.get("goodwill") is not None
            if batch_of and row.get("batch") in batch_of:
                batches.append(batch_of[row["batch"]])
    return Credited(amount, goodwill, tuple(sorted(set(batches))))


def read_credits(directory: Path) -> tuple[pl.DataFrame, dict[int, tuple[float, float, set[str]]]]:
    """Every batch's lines (with a `batch` column) and, from their manifests, each incident's
    span and services: what reports are checked against (already_credited)."""
    import json

    frames, incidents = [], {}
    for f in batch_files(directory):
        bid = BATCH_RE.match(f.name).group(1)
        manifest = f.with_name(bid + ".json")
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            for inc in doc["incidents"]:
                incidents[int(inc["id"])] = (float(inc["start"]), float(inc["end"]), set(inc["services"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(Problem(str(manifest), "", f"the batch's manifest cannot be read ({e}); its incidents "
                                                        "are unknown")) from None
        frames.append(pl.read_csv(f, columns=["account", "amount", "goodwill", "incident"],
                                  schema_overrides={k: LINE_SCHEMA[k] for k in ("account", "amount", "goodwill",
                                                                              "incident")})
                      .with_columns(batch=pl.lit(bid)))
    lines = pl.concat(frames) if frames else pl.DataFrame(schema={**{k: LINE_SCHEMA[k] for k in (
        "account", "amount", "goodwill", "incident")}, "batch": pl.String})
    return lines, incidents


def already_credited(lines: pl.DataFrame, incidents: dict[int, tuple[float, float, set[str]]],
                     reports: pl.DataFrame) -> pl.DataFrame:
    """Pure, in bulk: for reports (columns i, account, service, start, end), what batches credited
    each report's account for an incident that overlaps its window and took its service down.
    Returns i, credited (won), credited_goodwill, batches; credited_for is the same for one."""
    inc = pl.DataFrame({"incident": list(incidents), "s": [v[0] for v in incidents.values()],
                        "e": [v[1] for v in incidents.values()],
                        "services": [sorted(v[2]) for v in incidents.values()]},
                       schema={"incident": pl.Int64, "s": pl.Float64, "e": pl.Float64, "services": pl.List(pl.String)})
    hit = (reports.filter(pl.col("account").is_not_null())
           .join(lines, on="account").join(inc, on="incident")
           .filter((pl.col("s") < pl.col("end")) & (pl.col("start") < pl.col("e"))
                   & (pl.col("services").list.contains(pl.col("service"))
                      | pl.col("services").list.contains(pl.lit(ANY_SERVICE)))))
    return hit.group_by("i").agg(credited=pl.col("amount").sum(),
                                 credited_goodwill=pl.col("goodwill").is_not_null().any(),
                                 batches=pl.col("batch").unique().sort().str.join(", "))


def _sha256(path: Path) -> str:
    from firebreak.claims.accounts import file_sha256
    return file_sha256(path)


class _Hashing:
    """A binary file that hashes what is written to it (polars writes CSV in chunks of MBs;
    hashlib releases the GIL for them)."""

    def __init__(self, fh):
        import hashlib

        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, chunk) -> int:
        self.sha.update(chunk)
        return self.fh.write(chunk)

    def flush(self) -> None:
        self.fh.flush()


def _write_csv_hashed(frame: pl.DataFrame, path: Path) -> str:
    """Write frame as CSV to path; returns the file's sha256."""
    with path.open("wb") as fh:
        out = _Hashing(fh)
        frame.write_csv(out)
    return out.sha.hexdigest()


def _iso(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def batch_id(now: float, token: str) -> str:
    from datetime import datetime, timezone
    return f"credit-{datetime.fromtimestamp(now, timezone.utc):%Y%m%dT%H%M%SZ}-{token}"


def run(policy: Policy, policy_file: Path, accounts: Accounts, ledger, ledger_source: dict, out: Path,
        now: float, token: str) -> dict:
    """Credit every affected account into a new batch in `out`; returns its manifest. Only one run
    at a time per directory (a lock file), and the batch's CSV appears last, complete: a batch
    whose CSV is there was written whole, and counts as paid from then on."""
    import fcntl
    import json
    import os
    from concurrent.futures import ThreadPoolExecutor

    from firebreak.claims.ledger import incidents as group

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".credit.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(Problem(str(out), "", "another `firebreak claims credit` is writing to this directory; "
                                                   "wait for it to finish")) from None
        paid, earlier = read_paid(out)
        incs = group(ledger.outages)
        o = owed(policy, accounts, incs, paid)
        bid = batch_id(now, token)
        csv_path, pq_path = out / f"{bid}.csv", out / f"{bid}.parquet"
        held_path, manifest_path = out / f"{bid}.held.csv", out / f"{bid}.json"
        tmp = {p: p.with_name(p.name + ".tmp") for p in (csv_path, pq_path, held_path, manifest_path)}
        # The CSV for payment systems and the Parquet copy for analysts are written side by side;
        # the CSV (1.6 GB for twenty million accounts) is hashed as it is written, not read again.
        with ThreadPoolExecutor(2) as pool:
            csv_job = pool.submit(_write_csv_hashed, o.lines, tmp[csv_path])
            jobs = [pool.submit(o.lines.write_parquet, tmp[pq_path]), pool.submit(o.held.write_csv, tmp[held_path])]
            for j in jobs:
                j.result()
            hashes = dict(zip((pq_path, held_path), pool.map(_sha256, [tmp[pq_path], tmp[held_path]])))
            hashes[csv_path] = csv_job.result()
        earlier_docs = []
        for f in earlier:
            m = f.with_suffix(".json")
            try:
                doc = json.loads(m.read_text(encoding="utf-8"))
                earlier_docs.append({"batch": doc["batch"], "csv_sha256": doc["files"]["csv"]["sha256"],
                                     "amount": doc["totals"]["amount"]})
            except (OSError, ValueError, KeyError, TypeError):
                earlier_docs.append({"batch": f.stem, "csv_sha256": None, "note": "no readable manifest"})
        paying = o.lines
        manifest = {
            "batch": bid,
            "created_at": _iso(now),
            "currency": policy.currency,
            "policy": {"name": policy.name, "file": str(policy_file), "sha256": _sha256(Path(policy_file))},
            "accounts": {"file": accounts.label, "sha256": accounts.sha256, "rows": len(accounts)},
            "ledger": {**ledger_source, "outages": len(ledger.outages), "notes": ledger.notes()},
            "incidents": [{"id": i.id, "start": i.start, "end": i.end, "start_utc": _iso(i.start),
                           "end_utc": _iso(i.end), "open": i.open, "services": i.services,
                           "outages": len(i.outages)} for i in incs],
            "earlier_batches": earlier_docs,
            "totals": {
                "lines": paying.height,
                "accounts": o.accounts,
                "amount": int(paying["amount"].sum()) if paying.height else 0,
                "goodwill": int(paying["goodwill"].is_not_null().sum()) if paying.height else 0,
                "by_rule": o.by_rule,
                "held_lines": o.held.height,
                "held_amount": int(o.held["amount"].sum()) if o.held.height else 0,
                "entitled": o.entitled,
                "already_paid": o.already_paid,
            },
            "files": {"csv": {"name": csv_path.name, "sha256": hashes[csv_path]},
                      "parquet": {"name": pq_path.name, "sha256": hashes[pq_path]},
                      "held": {"name": held_path.name, "sha256": hashes[held_path],
                               "note": "above a rule's review_over: not paid; a person reviews each line"}},
            "approval": "a reviewer approves this batch as a whole (its totals and hashes), not each line",
        }
        tmp[manifest_path].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for p in (pq_path, held_path, manifest_path, csv_path):   # the CSV last: its presence means "paid"
            os.replace(tmp[p], p)
        return manifest
