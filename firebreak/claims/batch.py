"""Pricing reports in bulk: the policy of policy.py applied to columns of a million reports at
once with numpy, and verification flags from the outage ledger. Checked against the one-report
function price() in tests, so the fast path cannot drift from the readable one."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firebreak.claims.ledger import Outage, merged
from firebreak.claims.models import REPORTER_KINDS
from firebreak.claims.policy import Policy

FLAG_OUTSIDE = 1     # claimed window overlaps no measured outage of the service
FLAG_DUPLICATE = 2   # same contact, service and window as an earlier report
FLAG_OVER = 4        # claimed amount far above what the policy pays
FLAG_NAMES = {FLAG_OUTSIDE: "outside-outage", FLAG_DUPLICATE: "duplicate", FLAG_OVER: "over-value"}


@dataclass
class ReportTable:
    """Columns of reports. kind: index into REPORTER_KINDS; service: index into services."""
    kind: np.ndarray
    service: np.ndarray
    services: list[str]
    start: np.ndarray          # epoch seconds
    end: np.ndarray
    claimed: np.ndarray        # won
    contact: np.ndarray        # an integer key per contact (e.g. a hash)
    plan_price: np.ndarray | None = None
    evidence: np.ndarray | None = None       # bit i set = evidence_names[i] present
    evidence_names: list[str] = field(default_factory=list)

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
            for i, rule in enumerate(policy.rules):
                if ("*" in rule.reporter_kinds or kind in rule.reporter_kinds) and \
                        ("*" in rule.services or svc in rule.services):
                    table[k, s] = i
                    break
    return table


def price_batch(policy: Policy, table: ReportTable, outages: list[Outage]) -> Priced:
    n = len(table)
    hours = verified_hours(table, outages)
    rule = _rule_lookup(policy, table.services)[table.kind, table.service]
    amount = np.zeros(n, dtype=np.int64)
    review = rule == -1
    goodwill = np.zeros(n, dtype=bool)
    plan = table.plan_price if table.plan_price is not None else np.zeros(n, dtype=np.int64)
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
        elif r.plan_percent is not None:
            value = np.rint(plan * r.plan_percent / 100).astype(np.int64)
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
    return Priced(rule, amount, review, goodwill, hours, flags)


def _duplicates(table: ReportTable) -> np.ndarray:
    """True for every report after the first with the same contact, service and window."""
    keys = np.stack([table.contact.astype(np.int64), table.service.astype(np.int64),
                     table.start.astype(np.int64), table.end.astype(np.int64)], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    dup = np.ones(len(table), dtype=bool)
    dup[first] = False
    return dup
