"""Abuse limits for the public side: requests per source (token buckets) and body sizes.

Each site's app keeps its own buckets; a source spread over three doors gets three times the
rate, which is fine for a limit meant to stop floods, not to meter people.
"""

from __future__ import annotations

from ipaddress import ip_address

from firebreak.throttle import Buckets


MAX_BODY = 32 * 1024  # bytes: a report is a few hundred; a description at most 4,000 characters
# A person sends a form and looks up a status a few times; a source may do that many at once
# before its per-minute rate applies. Half a minute's allowance was the burst before: with the
# lab's 600 a minute, 300 receipt guesses at once from any fresh source.
PORTAL_BURST = 20


def portal_buckets(per_minute: float) -> Buckets:
    """Per-source limits of the portal's form and status lookups: `per_minute`, after a burst of
    at most PORTAL_BURST."""
    return Buckets(rate=per_minute / 60.0, burst=max(1.0, min(per_minute / 2, PORTAL_BURST)))


def client_source(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The address to hold responsible: the peer, or, when the peer is one of our own doors,
    the address the door saw (the last entry it appended to X-Forwarded-For)."""
    peer = peer or "unknown"
    if peer in trusted and forwarded_for:
        last = forwarded_for.split(",")[-1].strip()
        try:
            return str(ip_address(last))
        except ValueError:
            return peer
    return peer


def scope_source(scope: dict, trusted: frozenset[str]) -> str:
    """client_source() for an ASGI request scope."""
    peer = scope["client"][0] if scope.get("client") else None
    xff = next((v for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
    return client_source(peer, xff.decode("latin-1") if xff else None, trusted)
