"""The outage ledger as claims see it: measured outages per service, and verification of a
report's claimed window against them. Pure, but for reading a file.

What the ledger says is read with suspicion, because money depends on it:
- a drill's entry is a rehearsal, never an outage (nobody was harmed, nobody is paid);
- an entry still open (`end: null`) is believed to last until now, but only up to the policy's
  `max_open_hours`: past that it is far more likely a coordinator that died before closing it
  than an outage, and believing it would make every later claim verify. It is flagged, with the
  reason, and not believed until someone closes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firebreak.inputs import load_yaml_model

ANY_SERVICE = "*"
DEFAULT_MAX_OPEN_HOURS = 24.0


class OutageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    service: str = Field(default=ANY_SERVICE, min_length=1)
    start: float | datetime
    end: float | datetime | None = Field(description="null while the outage goes on")
    site: str | None = None
    source: str = "ledger"
    id: str | None = Field(default=None, description="stable name of the entry (the etcd key); default service@start")

    @model_validator(mode="after")
    def _order(self) -> "OutageIn":
        if self.end is not None and _ts(self.end) <= _ts(self.start):
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
    id: str = ""
    open: bool = False           # the ledger has no end yet: believed until `end` (the time it was read)


@dataclass(frozen=True)
class LedgerRead:
    outages: list[Outage]
    flagged: list[str] = field(default_factory=list)    # entries not believed, each with the reason
    drills: int = 0                                       # drill entries left out

    def notes(self) -> list[str]:
        return ([f"{self.drills} drill entr{'y' if self.drills == 1 else 'ies'} left out (a drill is not an outage)"]
                if self.drills else []) + self.flagged


def is_drill(key: str, entry: dict) -> bool:
    """The drill runner's entries: `ledger/drill-...` keys, source "drill"."""
    return entry.get("source") == "drill" or key.rsplit("/", 1)[-1].startswith("drill-")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_entries(entries: Iterable[tuple[str, dict]], now: float, max_open_hours: float) -> LedgerRead:
    """Ledger entries (key, value) as believed outages. Values that do not parse are flagged
    rather than guessed at; entries of the estate's site incidents ('site X') name no service
    and so verify nothing on their own (each service's outage has its own entry)."""
    outages, flagged, drills = [], [], 0
    for key, e in entries:
        if not isinstance(e, dict):
            flagged.append(f"{key}: not a JSON object; ignored")
            continue
        if is_drill(key, e):
            drills += 1
            continue
        try:
            start = float(e["start"])
            end = float(e["end"]) if e.get("end") is not None else None
        except (KeyError, TypeError, ValueError):
            flagged.append(f"{key}: no readable start/end; ignored")
            continue
        service = str(e.get("service") or ANY_SERVICE)
        if end is None:
            if now - start > max_open_hours * 3600:
                flagged.append(f"{key}: {service} open since {_iso(start)}, longer than max_open_hours "
                               f"({max_open_hours:g} h): not believed; close the entry (or raise the limit) if it "
                               f"is a real outage")
                continue
            if now > start:
                outages.append(Outage(service, start, now, e.get("site"), str(e.get("source", "agent")), key, True))
            continue
        if end <= start:
            flagged.append(f"{key}: end is not after start; ignored")
            continue
        outages.append(Outage(service, start, end, e.get("site"), str(e.get("source", "agent")), key))
    return LedgerRead(outages, flagged, drills)


def read_ledger(path: Path | str, now: float, max_open_hours: float = DEFAULT_MAX_OPEN_HOURS) -> LedgerRead:
    """A YAML or JSON file: {outages: [{service, start, end, site?, source?, id?}, ...]} (epoch
    seconds or ISO; end null while an outage goes on)."""
    spec, _ = load_yaml_model(path, LedgerFile)
    entries = []
    for o in spec.outages:
        start = _ts(o.start)
        entries.append((o.id or f"{o.service}@{start:.3f}",
                        {"service": o.service, "start": start, "end": None if o.end is None else _ts(o.end),
                         "site": o.site, "source": o.source}))
    return read_entries(entries, now, max_open_hours)


def load_ledger(path: Path | str, now: float | None = None,
                max_open_hours: float = DEFAULT_MAX_OPEN_HOURS) -> list[Outage]:
    """The believed outages of a ledger file (see read_ledger)."""
    return read_ledger(path, time.time() if now is None else now, max_open_hours).outages


def merged(outages: Iterable[Outage], service: str) -> list[tuple[float, float]]:
    """Disjoint, sorted intervals during which the service was out (entries for '*' count for all)."""
    return union((o.start, o.end) for o in outages if o.service in (service, ANY_SERVICE))


def union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(spans):
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


@dataclass(frozen=True)
class Incident:
    """Outages that overlap, of any services, as one event: credit pays each account once per
    incident, however many of its services it took down. Its id is its start in whole epoch
    seconds, which does not change when the incident grows later."""
    id: int
    start: float
    end: float
    outages: tuple[Outage, ...]

    @property
    def services(self) -> list[str]:
        return sorted({o.service for o in self.outages})

    @property
    def open(self) -> bool:
        return any(o.open for o in self.outages)


def incidents(outages: Iterable[Outage]) -> list[Incident]:
    out: list[list] = []
    for o in sorted(outages, key=lambda o: (o.start, o.end, o.service)):
        if out and o.start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], o.end)
            out[-1][2].append(o)
        else:
            out.append([o.start, o.end, [o]])
    return [Incident(int(s), s, e, tuple(os)) for s, e, os in out]
