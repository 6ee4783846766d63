"""The public record, without I/O: from the outage ledger (what the ledger believes, and the
agents' entries' own words) to what the public status page and its Atom feed show: every
service's state now, its history as a bar per day, and each incident with its timeline and what
was credited for it. Drill entries are rehearsals and never appear (ledger.read_entries leaves
them out); an entry open longer than the policy allows is not believed, and so not shown as an
outage going on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Mapping

from firebreak.claims.ledger import ANY_SERVICE, Incident, LedgerRead, incidents, merged

KST = timezone(timedelta(hours=9))  # the page's days are Korea's (no daylight saving time)
HISTORY_DAYS = 90
MAJOR_SECONDS = 3600  # a day with an hour or more out is "major"; anything less, "minor"
MAX_INCIDENTS = 50


@dataclass(frozen=True)
class ServiceNow:
    service: str
    down: bool
    since: float | None = None   # when the outage going on began


@dataclass(frozen=True)
class DayBar:
    day: date
    out_seconds: float

    @property
    def level(self) -> str:
        return "ok" if self.out_seconds <= 0 else "major" if self.out_seconds >= MAJOR_SECONDS else "minor"

    @property
    def minutes(self) -> int:
        return int(round(self.out_seconds / 60))


@dataclass(frozen=True)
class Event:
    at: float
    what: str        # "out" | "site-down" | "back" | "resolved": the page's words for it (i18n "ev.*")
    subject: str     # a service, or a site
    detail: str = ""  # the agents' own words (the detector's reason, what the failover did)


@dataclass(frozen=True)
class PublicIncident:
    id: int
    start: float
    end: float | None          # None while it goes on
    services: tuple[str, ...]  # ("*",): every service
    sites: tuple[str, ...]
    causes: tuple[str, ...]    # the agents' words for why (empty: the ledger does not say)
    timeline: tuple[Event, ...]
    credited_accounts: int | None = None  # None: no credit batch for it (yet)
    credited_total: int | None = None

    @property
    def anchor(self) -> str:
        return f"incident-{self.id}"


@dataclass(frozen=True)
class StatusView:
    now: float
    services: tuple[ServiceNow, ...]
    history: Mapping[str, tuple[DayBar, ...]]
    incidents: tuple[PublicIncident, ...]

    @property
    def all_up(self) -> bool:
        return not any(s.down for s in self.services)


def day_of(t: float) -> date:
    return datetime.fromtimestamp(t, KST).date()


def day_start(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=KST).timestamp()


def history(spans: Iterable[tuple[float, float]], now: float, days: int = HISTORY_DAYS) -> tuple[DayBar, ...]:
    """Seconds out on each of the last `days` Korean days (today last), from disjoint spans."""
    spans = list(spans)
    today = day_of(now)
    bars = []
    for back in range(days - 1, -1, -1):
        d = today - timedelta(days=back)
        s, e = day_start(d), min(day_start(d + timedelta(days=1)), now)
        bars.append(DayBar(d, sum(max(0.0, min(e, b) - max(s, a)) for a, b in spans)))
    return tuple(bars)


def timeline(inc: Incident, raw: Mapping[str, dict]) -> tuple[Event, ...]:
    events = []
    for o in inc.outages:
        entry = raw.get(o.id, {})
        if entry.get("kind") == "site-down":
            events.append(Event(o.start, "site-down", str(entry.get("site") or o.site or ""),
                                "; ".join(x for x in (str(entry.get("detail") or ""), str(entry.get("failover") or ""))
                                          if x)))
        else:
            events.append(Event(o.start, "out", o.service, str(entry.get("detail") or "")))
        if not o.open:
            events.append(Event(o.end, "back", o.service if entry.get("kind") != "site-down"
                                else str(entry.get("site") or o.site or "")))
    if not inc.open:
        events.append(Event(inc.end, "resolved", ""))
    return tuple(sorted(events, key=lambda ev: (ev.at, ev.what != "site-down")))


def causes(inc: Incident, raw: Mapping[str, dict]) -> tuple[str, ...]:
    found = []
    for o in inc.outages:
        entry = raw.get(o.id, {})
        if entry.get("kind") == "site-down":
            found.append(f"site {entry.get('site') or o.site} lost" + (f": {entry['detail']}" if entry.get("detail")
                                                                       else ""))
        elif entry.get("cause"):
            found.append(str(entry["cause"]))
        elif o.site:
            found.append(f"site {o.site}")
    return tuple(dict.fromkeys(found))


def status_view(read: LedgerRead, raw: Mapping[str, dict], services: Iterable[str], now: float,
                credits: Mapping[int, tuple[int, int]] | None = None, days: int = HISTORY_DAYS) -> StatusView:
    """The page: `read` is what the ledger believes (drills left out, long-open entries not
    believed), `raw` the ledger's entries by key (for the agents' words), `credits` the accounts
    credited and the total per incident id (credit batches)."""
    services = list(services)
    outages = [o for o in read.outages if o.start <= now]
    now_rows = []
    for s in services:
        going = [o.start for o in outages if o.open and o.service in (s, ANY_SERVICE)]
        now_rows.append(ServiceNow(s, bool(going), min(going) if going else None))
    past = []
    for inc in sorted(incidents(outages), key=lambda i: i.start, reverse=True)[:MAX_INCIDENTS]:
        paid = (credits or {}).get(inc.id)
        past.append(PublicIncident(
            inc.id, inc.start, None if inc.open else inc.end, tuple(inc.services),
            tuple(sorted({o.site for o in inc.outages if o.site})), causes(inc, raw), timeline(inc, raw),
            paid[0] if paid else None, paid[1] if paid else None))
    return StatusView(now, tuple(now_rows), {s: history(merged(outages, s), now, days) for s in services},
                      tuple(past))


ATOM = "http://www.w3.org/2005/Atom"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom(view: StatusView, lang: str, base: str, words: Mapping[str, str], describe) -> bytes:
    """The incidents as an Atom feed (RFC 4287): one entry per incident, its id stable across
    sites and languages (every site's app serves the same ledger), updated when it ends.
    `describe(incident)` gives an entry's title and its text (the page's words)."""
    import xml.etree.ElementTree as ET

    ET.register_namespace("", ATOM)

    def el(parent, tag: str, text: str | None = None, **attrs: str):
        e = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            e.text = text
        return e

    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": lang})
    el(feed, "id", "urn:firebreak:incidents")
    el(feed, "title", words["inc.title"])
    el(feed, "updated", iso(max([i.end or view.now for i in view.incidents], default=view.now)))
    el(feed, "link", rel="self", href=f"{base}/incidents.atom?lang={lang}", type="application/atom+xml")
    el(feed, "link", rel="alternate", href=f"{base}/incidents?lang={lang}", type="text/html")
    el(el(feed, "author"), "name", "Firebreak")
    for inc in view.incidents:
        title, text = describe(inc)
        entry = el(feed, "entry")
        el(entry, "id", f"urn:firebreak:incident:{inc.id}")
        el(entry, "title", title)
        el(entry, "published", iso(inc.start))
        el(entry, "updated", iso(inc.end or view.now))
        el(entry, "link", rel="alternate", href=f"{base}/incidents?lang={lang}#{inc.anchor}", type="text/html")
        el(entry, "content", text, type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
