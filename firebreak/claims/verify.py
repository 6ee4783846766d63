"""Verification of one report against the outage ledger and the policy: what it is worth, and
what a reviewer should know about it. Pure; the database flow and the console call it.

The flags mean the same as in bulk pricing (batch.py, held to this by a test):
outside-outage: the claimed window overlaps no measured outage of the service;
duplicate: an earlier report has the same contact, service and window;
over-value: the claim is far above what the policy values the damage at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from firebreak.claims.ledger import Outage, merged, verified_hours
from firebreak.claims.policy import Claim, Policy, price

FLAGS = ("outside-outage", "duplicate", "over-value")


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
           duplicate: bool = False) -> Assessment:
    s = start.timestamp() if isinstance(start, datetime) else float(start)
    e = end.timestamp() if isinstance(end, datetime) else float(end)
    hours = verified_hours(merged(outages, service), s, e)
    quote = price(policy, Claim(reporter_kind, service, claimed_amount, hours, plan_price, frozenset(evidence)))
    flags, reasons = [], list(quote.reasons)
    if hours <= 0:
        flags.append("outside-outage")
        reasons.append(f"no measured outage of {service} inside the claimed window")
    if duplicate:
        flags.append("duplicate")
        reasons.append("an earlier report has the same contact, service and window")
    rule = next((r for r in policy.rules if r.id == quote.rule), None)
    # Tiered rules price the claimed amount itself; only an independent valuation can be "far over".
    if rule is not None and rule.tiers is None and quote.amount > 0 and \
            claimed_amount > policy.flag_over_ratio * quote.amount:
        flags.append("over-value")
        reasons.append(f"claimed {claimed_amount:,} is over {policy.flag_over_ratio:g}× the policy's value "
                       f"{quote.amount:,}")
    return Assessment(quote.rule, quote.amount, quote.review, quote.goodwill, round(hours, 4), tuple(flags),
                      tuple(reasons))
