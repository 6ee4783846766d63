"""Compensation policy: a declared file, validated like a topology, and pure pricing functions.

A policy is an ordered list of rules; the first rule whose reporter kinds and services match a
report prices it. Every quote says which rule priced it and why, and whether a person must
review it.

What a payout depends on comes from the operator's data, never from the reporter's words: a
fee rule (`fee_percent`) pays that percent of the account's monthly fee, from the accounts file,
for the outage's share of the billing period; a sales rule (`sales_percent`) pays that percent
of the sales per hour the account declared, for each hour of outage. Only tiers price what a
reporter claims, and they need a report.

Credit without a claim (credit.py) uses, for each reporter kind and service, the first matching
rule that needs no report: not tiers (nothing was claimed) and no evidence (nothing was sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firebreak.claims.i18n import SERVICES
from firebreak.claims.models import REPORTER_KINDS
from firebreak.errors import InputError, Problem
from firebreak.inputs import load_yaml_model, suggest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Tier(_Strict):
    up_to: int | None = Field(default=None, ge=0, description="claimed amount up to and including this")
    pay: int | None = Field(default=None, ge=0)
    review: bool = False

    @model_validator(mode="after")
    def _one(self) -> "Tier":
        if self.pay is None and not self.review:
            raise ValueError("a tier needs pay: AMOUNT or review: true")
        return self


class Rule(_Strict):
    id: str = Field(min_length=1)
    description: str = ""
    reporter_kinds: list[str] = Field(min_length=1, description="kinds, or ['*'] for every kind")
    services: list[str] = Field(default_factory=lambda: ["*"])
    min_downtime_hours: float = Field(default=0, ge=0, description="pay only when verified downtime exceeds this")
    evidence: list[str] = Field(default_factory=list, description="evidence the report must carry")
    # exactly one way to value the damage
    flat: int | None = Field(default=None, ge=0)
    per_hour: int | None = Field(default=None, ge=0, description="won per verified hour of downtime")
    fee_percent: float | None = Field(default=None, ge=0, le=1000,
                                      description="percent of the account's monthly fee for the outage's share of "
                                                  "the billing period")
    sales_percent: float | None = Field(default=None, ge=0, le=1000,
                                        description="percent of the account's declared sales per hour, per hour of "
                                                    "outage")
    tiers: list[Tier] | None = None
    goodwill: str | None = Field(default=None, description="a non-monetary item (e.g. an emoticon pack)")
    cap: int | None = Field(default=None, ge=0)
    minimum: int | None = Field(default=None, ge=0)
    review_over: int | None = Field(default=None, ge=0, description="a person reviews payouts above this")

    @model_validator(mode="before")
    @classmethod
    def _no_typed_plan(cls, data: object) -> object:
        if isinstance(data, dict) and "plan_percent" in data:
            # The old valuation paid a percent of a price the reporter typed (up to 10,000,000 won,
            # for any outage length): refused by name, so an old policy file says what to change.
            raise ValueError("plan_percent paid a percent of a plan price the reporter typed and is no longer "
                             "accepted; use fee_percent: that percent of the account's monthly fee (from the "
                             "accounts file) for the outage's share of the billing period")
        return data

    @model_validator(mode="after")
    def _one_valuation(self) -> "Rule":
        ways = [k for k in VALUATIONS if getattr(self, k) is not None]
        if len(ways) != 1:
            raise ValueError(f"a rule needs exactly one of {', '.join(VALUATIONS)}"
                             + (f" (it has {', '.join(ways)})" if ways else ""))
        if self.tiers is not None:
            if not self.tiers:
                raise ValueError("tiers must not be empty")
            bounds = [t.up_to for t in self.tiers if t.up_to is not None]
            if bounds != sorted(bounds):
                raise ValueError("tiers must be in increasing order of up_to")
            if self.tiers[-1].up_to is not None:
                raise ValueError("the last tier needs no up_to: it prices everything above the others")
        if self.pays_money:
            # Every won a rule can pay is bounded and a person sees the large ones: without both,
            # one mistyped rate or one gamed input pays without limit and without a look.
            missing = [k for k in ("cap", "review_over") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"rule '{self.id}' pays money, so it needs {' and '.join(missing)}: "
                                 "cap is the most one payout may be, review_over the amount above which a "
                                 "person reviews it (won)")
        if self.cap is not None and self.minimum is not None and self.minimum > self.cap:
            raise ValueError(f"minimum {self.minimum} is above cap {self.cap}")
        return self

    @property
    def pays_money(self) -> bool:
        """Every valuation but a goodwill item pays won."""
        return self.goodwill is None

    @property
    def needs_report(self) -> bool:
        """Tiers price a claimed amount and evidence comes with a report: neither exists without one."""
        return self.tiers is not None or bool(self.evidence)


VALUATIONS = ("flat", "per_hour", "fee_percent", "sales_percent", "tiers", "goodwill")


class Policy(_Strict):
    name: str = Field(min_length=1)
    currency: str = "KRW"
    # The services a report may name: intake refuses any other (and so no free text reaches the
    # payout export through this field).
    services: list[str] = Field(default_factory=lambda: list(SERVICES), min_length=1)
    description: str = ""
    flag_over_ratio: float = Field(default=3.0, gt=1, description="flag claims above this multiple of the value")
    # "Approve all clean" approves many payouts in one click: above this total it shows the total
    # and asks again, so a queue that grew overnight is not paid on a reflex.
    approve_all_confirm_over: int = Field(default=1_000_000, ge=0,
                                          description="won; above this total, approving all clean reports asks again")
    billing_period_days: float = Field(default=30, gt=0, le=366,
                                       description="a monthly fee pays for this many days: fee rules prorate over it")
    # An outage the ledger still shows open after this long is more likely a coordinator that died
    # before closing it than a real outage: it is flagged and not believed, or every later claim
    # would verify against it (and credit would pay for it).
    max_open_hours: float = Field(default=24, gt=0,
                                  description="a ledger entry open longer than this is flagged, not believed")
    rules: list[Rule] = Field(min_length=1)


def load_policy(path: Path | str) -> Policy:
    policy, _ = load_yaml_model(path, Policy)
    problems = []
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        for j, kind in enumerate(rule.reporter_kinds):
            if kind != "*" and kind not in REPORTER_KINDS:
                problems.append(Problem(str(path), f"rules[{i}].reporter_kinds[{j}]",
                                        f"unknown reporter kind '{kind}'{suggest(kind, REPORTER_KINDS)}; "
                                        f"kinds are {', '.join(REPORTER_KINDS)} or '*'"))
        for j, svc in enumerate(rule.services):
            if svc != "*" and svc not in policy.services:
                problems.append(Problem(str(path), f"rules[{i}].services[{j}]",
                                        f"service '{svc}' is not in the policy's services "
                                        f"({', '.join(policy.services)}){suggest(svc, policy.services)}"))
        if rule.id in seen:
            problems.append(Problem(str(path), f"rules[{i}].id", f"rule id '{rule.id}' is used twice"))
        seen.add(rule.id)
    if problems:
        raise InputError(problems)
    return policy


@dataclass(frozen=True)
class Claim:
    """What pricing needs to know about a report (or, for credit, an account and an outage).
    The fee and sales come from the accounts file the operator loads; None: no account on file."""
    reporter_kind: str
    service: str
    claimed_amount: int
    verified_hours: float          # downtime of the service inside the claimed window, per the ledger
    evidence: frozenset[str] = frozenset()
    monthly_fee: int | None = None
    sales_per_hour: int | None = None


@dataclass(frozen=True)
class Quote:
    rule: str | None
    amount: int
    review: bool
    goodwill: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _matches(rule: Rule, claim: Claim) -> bool:
    return (("*" in rule.reporter_kinds or claim.reporter_kind in rule.reporter_kinds)
            and ("*" in rule.services or claim.service in rule.services))


def rule_for(policy: Policy, kind: str, service: str, *, report: bool = True) -> int:
    """The index of the rule that prices (kind, service), or -1. For credit (report=False), the
    first matching rule that needs no report."""
    for i, rule in enumerate(policy.rules):
        if (("*" in rule.reporter_kinds or kind in rule.reporter_kinds)
                and ("*" in rule.services or service in rule.services)
                and (report or not rule.needs_report)):
            return i
    return -1


def prorated_fee(fee, percent: float, hours, period_days: float):
    """The fee for `hours` of a billing period of `period_days`, at `percent`; scalars or numpy
    arrays alike (one expression, so the bulk and one-by-one prices agree to the won)."""
    return fee * percent * hours / (100.0 * period_days * 24.0)


def hourly_sales(sales, percent: float, hours):
    return sales * percent * hours / 100.0


def price(policy: Policy, claim: Claim) -> Quote:
    for rule in policy.rules:
        if not _matches(rule, claim):
            continue
        reasons = [f"rule {rule.id}"]
        if claim.verified_hours <= rule.min_downtime_hours:
            return Quote(rule.id, 0, False, None, tuple(reasons + [
                f"verified downtime {claim.verified_hours:.1f} h is not over the rule's threshold of "
                f"{rule.min_downtime_hours:g} h"]))
        missing = [e for e in rule.evidence if e not in claim.evidence]
        if missing:
            return Quote(rule.id, 0, True, None, tuple(reasons + [f"missing evidence: {', '.join(missing)}"]))
        review = False
        if rule.goodwill is not None:
            return Quote(rule.id, 0, False, rule.goodwill, tuple(reasons + [f"goodwill: {rule.goodwill}"]))
        if rule.flat is not None:
            amount = rule.flat
        elif rule.per_hour is not None:
            amount = int(round(rule.per_hour * claim.verified_hours))
            reasons.append(f"{claim.verified_hours:.2f} h × {rule.per_hour:,}")
        elif rule.fee_percent is not None:
            if claim.monthly_fee is None:
                return Quote(rule.id, 0, True, None, tuple(reasons + [
                    "no monthly fee on file for this account (a typed plan price is not used): "
                    "load the accounts file, or price it by hand"]))
            amount = int(round(prorated_fee(claim.monthly_fee, rule.fee_percent, claim.verified_hours,
                                            policy.billing_period_days)))
            reasons.append(f"{rule.fee_percent:g}% of the monthly fee {claim.monthly_fee:,} for "
                           f"{claim.verified_hours:.2f} h of {policy.billing_period_days * 24:g} h")
        elif rule.sales_percent is not None:
            if claim.sales_per_hour is None:
                return Quote(rule.id, 0, True, None, tuple(reasons + [
                    "no declared sales per hour on file for this account: load the accounts file, "
                    "or price it by hand"]))
            amount = int(round(hourly_sales(claim.sales_per_hour, rule.sales_percent, claim.verified_hours)))
            reasons.append(f"{rule.sales_percent:g}% of declared sales {claim.sales_per_hour:,}/h × "
                           f"{claim.verified_hours:.2f} h")
        else:
            tier = next(t for t in rule.tiers if t.up_to is None or claim.claimed_amount <= t.up_to)
            if tier.review:
                return Quote(rule.id, 0, True, None, tuple(reasons + [
                    f"claimed {claim.claimed_amount:,} is above every paid tier: individual review"]))
            amount = tier.pay
            reasons.append(f"claimed {claim.claimed_amount:,} " +
                           (f"≤ {tier.up_to:,}" if tier.up_to is not None else "in the top tier") + f": {amount:,}")
        if rule.minimum is not None and amount < rule.minimum:
            amount = rule.minimum
            reasons.append(f"raised to the minimum {rule.minimum:,}")
        if rule.cap is not None and amount > rule.cap:
            amount = rule.cap
            reasons.append(f"capped at {rule.cap:,}")
        if rule.review_over is not None and amount > rule.review_over:
            review = True
            reasons.append(f"over {rule.review_over:,}: a person reviews it")
        return Quote(rule.id, amount, review, None, tuple(reasons))
    return Quote(None, 0, True, None, ("no rule of the policy covers this reporter kind and service",))
