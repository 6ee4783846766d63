"""Token buckets per source: the one rate limiter, for the claims portal and the ops consoles.

Memory is bounded (`max_sources`): a flood from many addresses forgets the sources whose bucket
would be full again anyway, and past that, everything, rather than grow without limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def retry_after(self, source: str, now: float) -> float:
        """Seconds until `source` has a token again (0 when it has one now)."""
        if self.rate <= 0:
            return 0.0
        tokens, at = self._state.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
