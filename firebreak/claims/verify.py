"""Verification of one report against the outage ledger and the policy: what it is worth, and
what a reviewer should know about it. Pure; the database flow and the console call it.

The flags mean the same as in bulk pricing (batch.py, held to this by a test):
outside-outage: the claimed window overlaps no measured outage of the service;
duplicate: an earlier report of the same account (or, without one, the same contact) for the
  same service has an overlapping window (see duplicate_of);
over-value: the claim is far above what the policy values the damage at;
already-credited: the account was credited for that outage without a claim (credit.py); the
  report pays only what the credit did not.

A typed plan price is not used: fees and sales come from the accounts file the operator loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from firebreak.claims.ledger import Outage, merged, verified_hours
from firebreak.claims.policy import Claim, Policy, price

FLAGS = ("outside-outage", "duplicate", "over-value", "already-credited")


@dataclass(frozen=True)
class Credited:
    """What credit batches already gave an account for the outage a report is about."""
    amount: int = 0
    goodwill: bool = False
    batches: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.amount > 0 or self.goodwill


@dataclass(frozen=True)
class Assessment:
    rule: str | None
    amount: int
    review: bool
    goodwill: str | None
    hours: float
    flags: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """Nothing for a person to look at: approvable in bulk."""
        return not self.flags and not self.review and self.rule is not None


def assess(policy: Policy, outages: list[Outage], *, reporter_kind: str, service: str, start: datetime | float,
           end: datetime | float, claimed_amount: int, plan_price: int = 0, evidence: tuple[str, ...] = (),
           duplicate: bool = False, monthly_fee: int | None = None, sales_per_hour: int | None = None,
           credited: Credited | None = None) -> Assessment:
    """`plan_price` is what the reporter typed; it is accepted (old callers pass it) and ignored.
    `monthly_fee`/`sales_per_hour`: the account's, from the accounts file (None: no account)."""
    del plan_price  # the reporter's word is not a price
    s = start.timestamp() if isinstance(start, datetime) else float(start)
    e = end.timestamp() if isinstance(end, datetime) else float(end)
    hours = verified_hours(merged(outages, service), s, e)
    quote = price(policy, Claim(reporter_kind, service, claimed_amount, hours, frozenset(evidence),
                                monthly_fee, sales_per_hour))
    flags, reasons = [], list(quote.reasons)
    amount, goodwill = quote.amount, quote.goodwill
    if hours <= 0:
        flags.append("outside-outage")
        reasons.append(f"no measured outage of {service} inside the claimed window")
    if duplicate:
        flags.append("duplicate")
        reasons.append("an earlier report of the same account and service has an overlapping window")
    rule = next((r for r in policy.rules if r.id == quote.rule), None)
    # Tiered rules price the claimed amount itself; only an independent valuation can be "far over".
    if rule is not None and rule.tiers is None and quote.amount > 0 and \
            claimed_amount > policy.flag_over_ratio * quote.amount:
        flags.append("over-value")
        reasons.append(f"claimed {claimed_amount:,} is over {policy.flag_over_ratio:g}× the policy's value "
                       f"{quote.amount:,}")
    if credited:
        amount, goodwill, note = net_of_credit(amount, goodwill, credited)
        flags.append("already-credited")
        reasons.append(note)
    return Assessment(quote.rule, amount, quote.review, goodwill, round(hours, 4), tuple(flags), tuple(reasons))


def net_of_credit(amount: int, goodwill: str | None, credited: Credited) -> tuple[int, str | None, str]:
    """A report's value less what the account was already credited for that outage, and why."""
    left = max(0, amount - credited.amount)
    where = f" (batch {', '.join(credited.batches)})" if credited.batches else ""
    note = (f"already credited {credited.amount:,}" + (" and the goodwill item" if credited.goodwill else "") +
            f" for this outage without a claim{where}: the report pays {left:,} more")
    return left, None if credited.goodwill else goodwill, note


def duplicate_of(report: tuple[int, float, float], others: Iterable[tuple[int, float, float]]) -> int | None:
    """The report this one duplicates, or None. Reports are (id, start, end) of one account (or
    contact) and one service; reports whose windows overlap, directly or through a chain of
    others, are one claim, and the earliest (lowest id) of them stands. A different contact
    for the same account is no way around it, and neither is a window shifted by a minute."""
    rid = report[0]
    first = first_of_claims([report, *(o for o in others if o[0] != rid)])[rid]
    return None if first == rid else first


def first_of_claims(reports: Iterable[tuple[int, float, float]]) -> dict[int, int]:
    """Each report's id -> the earliest id of its claim: the set of reports (of one account or
    contact and one service) whose windows overlap, directly or in a chain. Sorted by start, a
    window opens a new claim unless it starts before the latest end seen so far (windows are
    never empty: the intake refuses an end not after its start). O(n log n). The definition the
    verifier's FIRST_OF_CLAIM_SQL (review_store.py) computes in PostgreSQL, tested against it: a
    pairwise search on the app's event loop stopped every site's app for seconds at a time."""
    claims: list[list[int]] = []
    reach = float("-inf")
    for rid, start, end in sorted(reports, key=lambda r: (r[1], r[0])):
        if not claims or start >= reach:
            claims.append([])
        claims[-1].append(rid)
        reach = max(reach, end) if start < reach else end
    firsts: dict[int, int] = {}
    for claim in claims:
        first = min(claim)
        firsts.update(dict.fromkeys(claim, first))
    return firsts
