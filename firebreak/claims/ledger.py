"""The outage ledger as claims see it: measured outages per service, and verification of a
report's claimed window against them. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firebreak.inputs import load_yaml_model

ANY_SERVICE = "*"


class OutageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    service: str = Field(default=ANY_SERVICE, min_length=1)
    start: float | datetime
    end: float | datetime
    site: str | None = None
    source: str = "ledger"

    @model_validator(mode="after")
    def _order(self) -> "OutageIn":
        if _ts(self.end) <= _ts(self.start):
            raise ValueError("end must be after start")
        return self


class LedgerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outages: list[OutageIn]


def _ts(v: float | datetime) -> float:
    return v.timestamp() if isinstance(v, datetime) else float(v)


@dataclass(frozen=True)
class Outage:
    service: str
    start: float
    end: float
    site: str | None = None
    source: str = "ledger"


def load_ledger(path: Path | str) -> list[Outage]:
    """A YAML or JSON file: {outages: [{service, start, end, site?, source?}, ...]} (epoch seconds or ISO)."""
    spec, _ = load_yaml_model(path, LedgerFile)
    return [Outage(o.service, _ts(o.start), _ts(o.end), o.site, o.source) for o in spec.outages]


def merged(outages: Iterable[Outage], service: str) -> list[tuple[float, float]]:
    """Disjoint, sorted intervals during which the service was out (entries for '*' count for all)."""
    spans = sorted((o.start, o.end) for o in outages if o.service in (service, ANY_SERVICE))
    out: list[list[float]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def verified_hours(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Hours of measured outage inside the claimed window."""
    total = 0.0
    for s, e in intervals:
        total += max(0.0, min(end, e) - max(start, s))
    return total / 3600.0
