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

A site lost while a drill is declared over it (control/drills.py) is recorded all the same,
failover and all, but as the drill's: `"source": "drill"` and the drill's id, which the claims
reader leaves out (a rehearsal harms nobody and pays nobody). The classification is made when the
incident opens and kept until it closes, whoever closes it, so an entry never changes its nature
half way. The drill runner's own entries (`ledger/drill-...`, a fault's kind, no `recorded_by`)
are never adopted: they are written closed, after the drill, and are not the agents' to carry on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Mapping

from firebreak.control.detector import Verdict

KIND = "site-down"
SOURCE = "agent"  # what the agents write; drills write "drill"
DRILL_SOURCE = "drill"  # the drill runner's entries, and the agents' for a site under a declared drill


@dataclass(frozen=True)
class Incident:
    site: str
    start: float
    end: float | None = None
    kind: str = KIND
    detail: str = ""
    failover: str = ""  # what the coordinator released during it, "; "-joined
    drill: str = ""     # the declared drill it opened under (control/drills.py), "" for a real loss

    def entry(self, recorded_by: str, estate: bool) -> dict:
        """The ledger value. An estate records each service's own outage (outages.py): the site's
        loss is on record there, but it is not an outage of every service (compensation is per
        service), so it names the site as its "service". A drill's: source "drill" and its id (a
        real loss's entry has no `drill` field, as before drills were declared)."""
        e = {**asdict(self), "recorded_by": recorded_by, "source": DRILL_SOURCE if self.drill else SOURCE}
        if not self.drill:
            del e["drill"]
        if estate:
            e["service"] = f"site {self.site}"
        return e

    def with_failover(self, done: str) -> "Incident":
        return replace(self, failover="; ".join(x for x in (self.failover, done) if x))


def step(open_: Mapping[str, Incident], verdicts: Mapping[str, Verdict], now: float,
         window: float, drilling: Mapping[str, str] | None = None) -> tuple[dict[str, Incident], list[Incident]]:
    """The incidents still open and those to write (opened, or closed with their end), in the
    verdicts' order. `drilling`: site -> the drill declared over it now (drills.active); an
    incident that opens there is that drill's."""
    drilling = drilling or {}
    still = dict(open_)
    writes: list[Incident] = []
    for site, v in verdicts.items():
        inc = still.get(site)
        if v.dead and inc is None:
            inc = Incident(site=site, start=now - window, detail=v.reason, drill=drilling.get(site, ""))
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
    coordinator), for the sites of this estate: the newest per site, a drill's staying the
    drill's. Entries that are not an agent's open site incident (the drill runner's, service
    outages, closed ones, ones that do not parse) are left alone."""
    known = set(sites)
    out: dict[str, Incident] = {}
    for raw in values:
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("kind") != KIND or e.get("end") is not None:
            continue
        drill = agents_drill(e)
        if e.get("source") != SOURCE and drill is None:
            continue
        try:
            inc = Incident(str(e["site"]), float(e["start"]), None, KIND, str(e.get("detail") or ""),
                           str(e.get("failover") or ""), drill or "")
        except (KeyError, TypeError, ValueError):
            continue
        if inc.site in known and (inc.site not in out or inc.start > out[inc.site].start):
            out[inc.site] = inc
    return out


def agents_drill(e: dict) -> str | None:
    """The drill id of an entry the agents recorded under a declared drill (source "drill", the
    drill's id in `drill`, and the agent that recorded it), or None: a real loss's entry, or the
    drill runner's own (which no agent recorded)."""
    drill = e.get("drill")
    return (drill if e.get("source") == DRILL_SOURCE and isinstance(drill, str) and drill and e.get("recorded_by")
            else None)
