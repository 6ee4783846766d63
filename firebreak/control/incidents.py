"""Site incidents for the ledger: a site lost by agreement, from when to when. Pure: the
coordinator steps it with the verdicts it computed; it says what to write.

An incident opens when a site is voted dead, dated back by the detector's window (the site had
been silent that long already), and closes once no fresh view sees the site unreachable any
more: not merely when the verdict stops being "dead" (a site whose voters went stale is not
back). The ledger, not the coordinator's memory, is the record: a coordinator that takes over
adopts the incidents still open there and closes each under its original start and key, so a
coordinator lost in the middle of a site's outage leaves one entry that closes, not an entry
that reads "still running" for ever (issue 31). Service outages are carried on the same way
(control/outages.py).

Drill entries (`ledger/drill-...`, `"source": "drill"`, control/keys.py) are never adopted: a
drill records its own outages, and they are not the estate's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Mapping

from firebreak.control.detector import Verdict

KIND = "site-down"
SOURCE = "agent"  # what the agents write; drills write "drill"


@dataclass(frozen=True)
class Incident:
    site: str
    start: float
    end: float | None = None
    kind: str = KIND
    detail: str = ""
    failover: str = ""  # what the coordinator released during it, "; "-joined

    def entry(self, recorded_by: str, estate: bool) -> dict:
        """The ledger value. An estate records each service's own outage (outages.py): the site's
        loss is on record there, but it is not an outage of every service (compensation is per
        service), so it names the site as its "service"."""
        e = {**asdict(self), "recorded_by": recorded_by, "source": SOURCE}
        if estate:
            e["service"] = f"site {self.site}"
        return e

    def with_failover(self, done: str) -> "Incident":
        return replace(self, failover="; ".join(x for x in (self.failover, done) if x))


def step(open_: Mapping[str, Incident], verdicts: Mapping[str, Verdict], now: float,
         window: float) -> tuple[dict[str, Incident], list[Incident]]:
    """The incidents still open and those to write (opened, or closed with their end), in the
    verdicts' order."""
    still = dict(open_)
    writes: list[Incident] = []
    for site, v in verdicts.items():
        inc = still.get(site)
        if v.dead and inc is None:
            inc = Incident(site=site, start=now - window, detail=v.reason)
            still[site] = inc
            writes.append(inc)
        elif not v.dead and inc is not None and not v.votes:
            writes.append(replace(inc, end=now))
            del still[site]
    return still, writes


def found_back(inc: Incident, by: str) -> Incident:
    """An adopted incident whose site was already back when `by` took over: it ended at some
    moment since the last coordinator's last word, which nobody saw. Its end is then when it was
    found back, and the entry says so (an upper bound, for whoever prices it)."""
    return replace(inc, detail="; ".join(x for x in (inc.detail, f"found back by {by} on taking over as "
                                                     "coordinator: it ended at or before this end") if x))


def adopt(values: Iterable[str], sites: Iterable[str]) -> dict[str, Incident]:
    """The site incidents still open in the ledger (its entries' JSON, written by an earlier
    coordinator), for the sites of this estate: the newest per site. Entries that are not an
    agent's open site incident (drills', service outages, closed ones, ones that do not parse)
    are left alone."""
    known = set(sites)
    out: dict[str, Incident] = {}
    for raw in values:
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("kind") != KIND or e.get("source") != SOURCE or e.get("end") is not None:
            continue
        try:
            inc = Incident(str(e["site"]), float(e["start"]), None, KIND, str(e.get("detail") or ""),
                           str(e.get("failover") or ""))
        except (KeyError, TypeError, ValueError):
            continue
        if inc.site in known and (inc.site not in out or inc.start > out[inc.site].start):
            out[inc.site] = inc
    return out
