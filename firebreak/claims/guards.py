"""The service's admin token (its own tools, and its site's agent): compared by digest, failed
attempts throttled per source, logged in summaries and counted.

`secrets.compare_digest` refuses a str holding anything but ASCII with a TypeError, so a header
like `Authorization: Bearer 토큰` used to reach the route as a 500. Both sides are hashed first
(SHA-256 of their UTF-8 bytes): the comparison is constant-time and total, whatever was sent."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from firebreak.claims.clock import Clock
from firebreak.claims.edge import AppMetrics
from firebreak.claims.review import AnonymousTally
from firebreak.throttle import Buckets

log = logging.getLogger("firebreak.claims")

# A person (or the agent) with the token never fails; a source that failed this often in a minute
# is guessing, and is refused without a comparison until its allowance comes back.
FAILED_PER_MINUTE = 10.0


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header ('' without one)."""
    return (authorization or "").removeprefix("Bearer ").strip()


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether the header carries `token` (an empty configured token matches nothing)."""
    return bool(token) and hmac.compare_digest(digest(bearer(authorization)), digest(token))


@dataclass(frozen=True)
class AdminVerdict:
    ok: bool
    why: str = ""            # "" | "wrong-token" | "throttled"
    retry_after: float = 0.0


class AdminGuard:
    """Checks the admin token on every route that takes it, throttles sources that keep failing,
    logs failures (the first at once, then one summary a minute) and counts every refusal in
    `firebreak_app_refusals_total{why="admin-token"|"admin-throttled"}`."""

    def __init__(self, token: str, site: str, metrics: AppMetrics, clock: Clock,
                 per_minute: float = FAILED_PER_MINUTE, summary_every: float = 60.0):
        self.token, self.site, self.metrics, self.clock = token, site, metrics, clock
        self.failures = Buckets(rate=per_minute / 60.0, burst=max(1.0, per_minute))
        self.tally = AnonymousTally(summary_every)

    def check(self, authorization: str | None, source: str, route: str) -> AdminVerdict:
        now = self.clock.monotonic()
        # The right token is never throttled: the throttle is for failures, and one source (a
        # host behind which a service's own tools and a stranger both sit, the lab's one address)
        # must not lock its tools out with someone else's wrong guesses. A guess of a 256-bit
        # token is no threat the throttle could change; the noise of wrong ones is.
        if token_matches(authorization, self.token):
            return AdminVerdict(True)
        wait = self.failures.retry_after(source, now)
        if wait > 0:
            self._refused(route, "admin-throttled", source, now)
            return AdminVerdict(False, "throttled", wait)
        self.failures.allow(source, now)  # spends one of the source's failed attempts
        self._refused(route, "admin-token", source, now)
        return AdminVerdict(False, "wrong-token")

    def _refused(self, route: str, why: str, source: str, now: float) -> None:
        self.metrics.refusals.labels(self.site, route, why).inc()
        summary = self.tally.note(f"{route} ({why})", source, now)
        if summary is not None:
            log.warning("refused %d admin request(s) without the service's admin token in the last %.0f s "
                        "from %d source(s): %s", summary["count"], summary["seconds"], summary["sources"],
                        summary["actions"])
