"""Pricing reports in bulk: the policy of policy.py applied to columns of a million reports at
once with numpy, and verification flags from the outage ledger. Checked against the one-report
function price() in tests, so the fast path cannot drift from the readable one."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firebreak.claims.ledger import Outage, merged
from firebreak.claims.models import REPORTER_KINDS
from firebreak.claims.policy import Policy, hourly_sales, prorated_fee, rule_for

FLAG_OUTSIDE = 1     # claimed window overlaps no measured outage of the service
FLAG_DUPLICATE = 2   # an earlier report of the same account and service overlaps its window
FLAG_OVER = 4        # claimed amount far above what the policy pays
FLAG_CREDITED = 8    # the account was credited for that outage without a claim
FLAG_NAMES = {FLAG_OUTSIDE: "outside-outage", FLAG_DUPLICATE: "duplicate", FLAG_OVER: "over-value",
              FLAG_CREDITED: "already-credited"}
NONE = -1            # no fee / sales on file for the report's account


@dataclass
class ReportTable:
    """Columns of reports. kind: index into REPORTER_KINDS; service: index into services."""
    kind: np.ndarray
    service: np.ndarray
    services: list[str]
    start: np.ndarray          # epoch seconds
    end: np.ndarray
    claimed: np.ndarray        # won
    contact: np.ndarray        # an integer key per account (or per contact where no account is known)
    plan_price: np.ndarray | None = None     # what reporters typed: never used to price (kept for old callers)
    evidence: np.ndarray | None = None       # bit i set = evidence_names[i] present
    evidence_names: list[str] = field(default_factory=list)
    monthly_fee: np.ndarray | None = None    # the account's, from the accounts file; NONE: not on file
    sales_per_hour: np.ndarray | None = None
    credited: np.ndarray | None = None       # won already credited to the account for the claimed outage
    credited_goodwill: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.kind)


@dataclass
class Priced:
    rule: np.ndarray           # index into policy.rules, -1 when no rule covers it
    amount: np.ndarray
    review: np.ndarray
    goodwill: np.ndarray
    hours: np.ndarray
    flags: np.ndarray

    def summary(self, policy: Policy) -> dict:
        paid = self.amount > 0
        return {
            "reports": int(len(self.amount)),
            "total_payout": int(self.amount.sum()),
            "paid": int(paid.sum()),
            "goodwill": int(self.goodwill.sum()),
            "needs_review": int(self.review.sum()),
            "flagged": {name: int(((self.flags & bit) != 0).sum()) for bit, name in FLAG_NAMES.items()},
            "by_rule": {r.id: int((self.rule == i).sum()) for i, r in enumerate(policy.rules)},
            "no_rule": int((self.rule == -1).sum()),
        }


def verified_hours(table: ReportTable, outages: list[Outage]) -> np.ndarray:
    hours = np.zeros(len(table))
    for code, svc in enumerate(table.services):
        intervals = merged(outages, svc)
        if not intervals:
            continue
        m = table.service == code
        if not m.any():
            continue
        s, e = table.start[m], table.end[m]
        h = np.zeros(len(s))
        for a, b in intervals:
            h += np.clip(np.minimum(e, b) - np.maximum(s, a), 0.0, None)
        hours[m] = h / 3600.0
    return hours


def _rule_lookup(policy: Policy, services: list[str]) -> np.ndarray:
    """rule index for every (kind, service) pair: first matching rule, or -1."""
    table = np.full((len(REPORTER_KINDS), len(services)), -1, dtype=np.int64)
    for k, kind in enumerate(REPORTER_KINDS):
        for s, svc in enumerate(services):
            table[k, s] = rule_for(policy, kind, svc)
    return table


def price_batch(policy: Policy, table: ReportTable, outages: list[Outage]) -> Priced:
    n = len(table)
    hours = verified_hours(table, outages)
    rule = _rule_lookup(policy, table.services)[table.kind, table.service]
    amount = np.zeros(n, dtype=np.int64)
    review = rule == -1
    goodwill = np.zeros(n, dtype=bool)
    unknown = np.full(n, NONE, dtype=np.int64)
    fee = table.monthly_fee if table.monthly_fee is not None else unknown
    sales = table.sales_per_hour if table.sales_per_hour is not None else unknown
    have = table.evidence if table.evidence is not None else np.zeros(n, dtype=np.int64)
    for i, r in enumerate(policy.rules):
        m = rule == i
        if not m.any():
            continue
        active = m & (hours > r.min_downtime_hours)
        if r.evidence:
            need = 0
            for name in r.evidence:
                if name not in table.evidence_names:
                    need = -1
                    break
                need |= 1 << table.evidence_names.index(name)
            missing = active & (((have & need) != need) if need >= 0 else np.ones(n, dtype=bool))
            review |= missing
            active &= ~missing
        if r.goodwill is not None:
            goodwill |= active
            continue
        if r.flat is not None:
            value = np.full(n, r.flat, dtype=np.int64)
        elif r.per_hour is not None:
            value = np.rint(r.per_hour * hours).astype(np.int64)
        elif r.fee_percent is not None:
            # no fee on file: a person prices it (a typed plan price is not a fee)
            review |= active & (fee == NONE)
            active &= fee != NONE
            value = np.rint(prorated_fee(fee, r.fee_percent, hours, policy.billing_period_days)).astype(np.int64)
        elif r.sales_percent is not None:
            review |= active & (sales == NONE)
            active &= sales != NONE
            value = np.rint(hourly_sales(sales, r.sales_percent, hours)).astype(np.int64)
        else:
            bounds = np.array([t.up_to for t in r.tiers[:-1]], dtype=np.int64)
            idx = np.searchsorted(bounds, table.claimed, side="left")  # first tier with claimed <= up_to
            pays = np.array([t.pay if t.pay is not None else 0 for t in r.tiers], dtype=np.int64)
            to_review = np.array([t.review for t in r.tiers], dtype=bool)[idx]
            review |= active & to_review
            active &= ~to_review
            value = pays[idx]
        if r.minimum is not None:
            value = np.maximum(value, r.minimum)
        if r.cap is not None:
            value = np.minimum(value, r.cap)
        amount[active] = value[active]
        if r.review_over is not None:
            review |= active & (value > r.review_over)
    flags = np.zeros(n, dtype=np.int64)
    flags[hours <= 0] |= FLAG_OUTSIDE
    flags[_duplicates(table)] |= FLAG_DUPLICATE
    # Tiered rules price the claimed amount itself (and send large claims to review), so a claim
    # is "far over the value" only where the policy values the damage independently of it.
    valued = np.array([r.tiers is None for r in policy.rules] + [False], dtype=bool)[rule]
    flags[valued & (amount > 0) & (table.claimed > policy.flag_over_ratio * amount)] |= FLAG_OVER
    # Credited without a claim for the same outage: the report pays only what the credit did not.
    credited = table.credited if table.credited is not None else np.zeros(n, dtype=np.int64)
    credited_gw = table.credited_goodwill if table.credited_goodwill is not None else np.zeros(n, dtype=bool)
    was = (credited > 0) | credited_gw
    flags[was] |= FLAG_CREDITED
    amount = np.where(was, np.maximum(amount - credited, 0), amount)
    goodwill &= ~credited_gw
    return Priced(rule, amount, review, goodwill, hours, flags)


def _duplicates(table: ReportTable) -> np.ndarray:
    """True for every report but the earliest of each set of reports of one account (or contact)
    and service whose windows overlap, directly or in a chain: verify.duplicate_of, in bulk."""
    import polars as pl

    n = len(table)
    if n == 0:
        return np.zeros(0, dtype=bool)
    df = pl.DataFrame({"k": table.contact.astype(np.int64), "v": table.service.astype(np.int64),
                       "s": table.start.astype(np.float64), "e": table.end.astype(np.float64),
                       "i": np.arange(n, dtype=np.int64)})
    # Sorted by start within each (account, service), a window opens a new set unless it starts
    # before the latest end seen so far in that group.
    df = (df.sort(["k", "v", "s", "i"])
          .with_columns(reach=pl.col("e").cum_max().shift(1).over(["k", "v"]))
          .with_columns(new=pl.col("reach").is_null() | (pl.col("s") >= pl.col("reach")))
          .with_columns(set=pl.col("new").cum_sum())
          .with_columns(first=pl.col("i").min().over("set")))
    dup = np.zeros(n, dtype=bool)
    dup[df["i"].to_numpy()] = (df["i"] != df["first"]).to_numpy()
    return dup
