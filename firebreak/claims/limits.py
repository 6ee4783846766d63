"""Abuse limits for the public side: requests per source (token buckets) and body sizes.

Each site's app keeps its own buckets; a source spread over three doors gets three times the
rate, which is fine for a limit meant to stop floods, not to meter people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address

MAX_BODY = 32 * 1024  # bytes: a report is a few hundred; a description at most 4,000 characters


@dataclass
class Buckets:
    rate: float            # tokens per second
    burst: float           # bucket size
    max_sources: int = 100_000
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)  # source -> (tokens, at)

    def allow(self, source: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, at = self._state.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if len(self._state) >= self.max_sources and source not in self._state:
            self._forget(now)
        if tokens < 1.0:
            self._state[source] = (tokens, now)
            return False
        self._state[source] = (tokens - 1.0, now)
        return True

    def _forget(self, now: float) -> None:
        # Sources whose bucket would be full again carry no information: drop them.
        full = [s for s, (tok, at) in self._state.items() if tok + (now - at) * self.rate >= self.burst]
        for s in full:
            del self._state[s]
        if len(self._state) >= self.max_sources:
            self._state.clear()


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
