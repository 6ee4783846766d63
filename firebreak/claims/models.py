"""A damage report as the API accepts it. Validation errors name the field and the reason."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPORTER_KINDS = ("paid_user", "free_user", "taxi_driver", "channel_shop", "advertiser", "other_partner")
ReporterKind = Literal["paid_user", "free_user", "taxi_driver", "channel_shop", "advertiser", "other_partner"]

MAX_AMOUNT = 10_000_000_000  # won; anything above is a typo, not a claim

Evidence = Literal["receipt", "screenshot", "sales_record"]
PHONE_RE = re.compile(r"^\+?[0-9][0-9 -]{7,18}[0-9]$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reporter_kind: ReporterKind
    service: str = Field(min_length=1, max_length=64, description="the affected service, e.g. messenger")
    window_start: datetime = Field(description="when the damage started (ISO 8601 with time zone)")
    window_end: datetime = Field(description="when it ended")
    claimed_amount: int = Field(ge=0, le=MAX_AMOUNT, description="claimed loss in won")
    description: str = Field(default="", max_length=4000)
    # The schema states the rule _contact enforces (with its own message), so clients and fuzzers know it.
    contact: str = Field(min_length=3, max_length=200, description="mobile number or e-mail",
                         json_schema_extra={"pattern": f"(?:{PHONE_RE.pattern})|(?:{EMAIL_RE.pattern})"})
    language: Literal["ko", "en"] = "ko"
    # What the reporter says their plan costs: kept for the reviewer to read, never used to price
    # (fees come from the operator's accounts file).
    plan_price: int = Field(default=0, ge=0, le=10_000_000, description="the reporter's paid plan, in won "
                                                                         "(informational; not used to price)")
    account: str | None = Field(default=None, min_length=1, max_length=200,
                                description="the reporter's account id, if they know it: payouts are priced from "
                                            "the operator's record of that account")
    evidence: list[Evidence] = Field(default_factory=list, max_length=3)

    @field_validator("service", "description", "contact", "account")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL: refuse it here, as bad input, rather than let the
        # database's refusal look like an unknown outcome (503) to the client.
        if v is not None and "\x00" in v:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return v

    @field_validator("contact")
    @classmethod
    def _contact(cls, v: str) -> str:
        if not (PHONE_RE.match(v) or EMAIL_RE.match(v)):
            raise ValueError("give a mobile number (e.g. 010-1234-5678) or an e-mail address")
        return v

    @field_validator("window_start", "window_end")
    @classmethod
    def _representable(cls, v: datetime) -> datetime:
        # Stored in UTC: 0001-01-01T00:02+01:00 is year 0 there, which no Python datetime holds
        # (the row came back from PostgreSQL unreadable and the client heard "outcome unknown").
        if v.tzinfo is not None:
            try:
                v.astimezone(timezone.utc)
            except (OverflowError, ValueError):
                raise ValueError("is out of range once converted to UTC; give a time between years 1 and 9999")
        return v

    @model_validator(mode="after")
    def _window(self) -> "ReportIn":
        if self.window_start.tzinfo is None or self.window_end.tzinfo is None:
            raise ValueError("window_start and window_end need a time zone, e.g. 2022-10-15T15:19:00+09:00")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class ReportOut(BaseModel):
    id: int
    receipt: str
    reporter_kind: str
    service: str
    window_start: datetime
    window_end: datetime
    claimed_amount: int
    status: str
    site: str
    created_at: datetime


class StatusOut(BaseModel):
    receipt: str
    status: str
    amount: int | None = None
    goodwill: str | None = None
    created_at: datetime
