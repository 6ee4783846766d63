"""Webhooks for the public record, without I/O: which events the incidents call for, which of them
this notifier has not tried to claim yet, which claimed deliveries are due again, and the
signature a subscriber checks. The notifier (notifier.py) is the shell that reads the ledger,
claims deliveries in the database and sends them.

Events are level-triggered, not edge-triggered: they are a function of the incidents as the public
record shows them now (status_page.status_view), not of what one process happened to see change.
Every site's app computes the same events with the same ids from the same ledger, so a notifier
that restarts, or one at another site, neither misses an event nor invents a new one; the
database's claim (one row per subscriber and event id) makes one of them send it. An event id
is what a subscriber dedupes on: delivery is at least once.

- `incident-<id>-opened`: the incident began (sent while it goes on, or if it began within the
  horizon; a late one for an incident already over still says when it opened);
- `incident-<id>-resolved-<end>`: it ended at <end> (whole epoch seconds). An incident whose end
  moves later (an outage recorded late that overlaps it) ends again, with a new event.

The horizon keeps a new subscriber, or a first deployment, from receiving the whole 90-day
history: only incidents going on, or that began or ended within it, call for events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AbstractSet, Iterable, Sequence

from firebreak.claims.status_page import PublicIncident

SIGNATURE_HEADER = "X-Firebreak-Signature"
TIMESTAMP_HEADER = "X-Firebreak-Timestamp"
EVENT_HEADER = "X-Firebreak-Event"
ATTEMPT_HEADER = "X-Firebreak-Attempt"
TOLERANCE_S = 300  # how old a timestamp a subscriber should accept (the docs' check), as Stripe's default


@dataclass(frozen=True)
class Event:
    id: str
    incident: int
    state: str                   # "open" | "resolved"
    start: float
    end: float | None
    services: tuple[str, ...]    # ("*",): every service
    sites: tuple[str, ...]
    causes: tuple[str, ...]
    url: str                     # the incident on the public status page

    def body(self) -> bytes:
        """The raw body, signed and sent as is at every attempt (stored with the claim, so a
        retry from another site sends the same bytes)."""
        doc = {"id": self.id, "type": f"incident.{'opened' if self.state == 'open' else 'resolved'}",
               "incident": self.incident, "state": self.state, "start": _iso(self.start),
               "end": None if self.end is None else _iso(self.end), "services": list(self.services),
               "sites": list(self.sites), "causes": list(self.causes), "url": self.url}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def events(incidents: Iterable[PublicIncident], now: float, horizon_s: float, public_url: str) -> list[Event]:
    """The events the incidents call for now, opened before resolved."""
    out = []
    for inc in sorted(incidents, key=lambda i: i.start):
        url = f"{public_url.rstrip('/')}/incidents#{inc.anchor}"
        common = dict(incident=inc.id, start=inc.start, services=inc.services, sites=inc.sites, causes=inc.causes,
                      url=url)
        if inc.end is None or inc.start >= now - horizon_s:
            out.append(Event(id=f"incident-{inc.id}-opened", state="open", end=None, **common))
        if inc.end is not None and inc.end >= now - horizon_s:
            out.append(Event(id=f"incident-{inc.id}-resolved-{int(inc.end)}", state="resolved", end=inc.end,
                             **common))
    return out


Key = tuple[str, str]  # (subscriber, event id)


def to_claim(known: AbstractSet[Key], wanted: Sequence[Event], subscribers: Sequence[str]) -> list[tuple[str, Event]]:
    """The (subscriber, event) deliveries this notifier has not tried to claim yet: the difference
    between what it knew of before and what the incidents call for now."""
    return [(s, e) for e in wanted for s in subscribers if (s, e.id) not in known]


def remember(known: AbstractSet[Key], wanted: Sequence[Event], tried: Iterable[Key]) -> frozenset[Key]:
    """What the notifier knows of after a claim: what it tried (won or lost, the row exists), kept
    only while the incidents still call for it, so the set never outgrows the horizon."""
    ids = {e.id for e in wanted}
    return frozenset(k for k in (*known, *tried) if k[1] in ids)


# -- retrying --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retry:
    lease_s: float = 60.0          # an attempt not finished by then is taken to have died with its sender
    base_s: float = 10.0           # the wait after the first failed attempt, doubled at each
    max_s: float = 3600.0
    give_up_s: float = 3 * 86400.0  # after this long since the claim, a delivery is abandoned

    def backoff(self, attempts: int) -> float:
        return min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Pending:
    """A claimed delivery not delivered yet, as read from the database (times are the database's)."""
    subscriber: str
    event_id: str
    created_at: float
    claimed_at: float              # when its latest attempt began
    attempts: int
    failed: bool                   # that attempt ended in an error (else it may still be under way)

    @property
    def key(self) -> Key:
        return self.subscriber, self.event_id


def due(rows: Iterable[Pending], now: float, retry: Retry) -> tuple[list[Pending], list[Pending]]:
    """(to attempt again now, to give up on). An attempt that failed waits out its backoff; one
    that never said how it ended waits out the lease as well, as its sender may still be at it."""
    again, give_up = [], []
    for r in rows:
        settled = r.failed or now - r.claimed_at >= retry.lease_s
        if settled and now - r.created_at >= retry.give_up_s:
            give_up.append(r)
            continue
        wait = retry.backoff(r.attempts) if r.failed else max(retry.lease_s, retry.backoff(r.attempts))
        if now - r.claimed_at >= wait:
            again.append(r)
    return again, give_up


# -- the signature ---------------------------------------------------------------------------------

def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 of "<timestamp>." + the raw body, as Stripe signs: the timestamp is signed too,
    so a captured request cannot be replayed later under a fresh one."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def headers(secret: bytes, timestamp: int, event_id: str, body: bytes, attempt: int) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "Firebreak-Webhooks/1", EVENT_HEADER: event_id,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body),
            ATTEMPT_HEADER: str(attempt)}


def check(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float,
          tolerance_s: float = TOLERANCE_S) -> str | None:
    """Why a delivery is not to be believed, or None: what a subscriber's check does."""
    if not timestamp or not timestamp.isdigit():
        return f"no {TIMESTAMP_HEADER}"
    if abs(now - int(timestamp)) > tolerance_s:
        return f"timestamp {timestamp} is more than {tolerance_s:g} s from now"
    if not signature or not hmac.compare_digest(signature, sign(secret, int(timestamp), body)):
        return "signature does not match"
    return None
