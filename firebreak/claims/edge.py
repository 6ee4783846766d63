"""The claims service's ASGI edge: body-size and rate limits, partners' keys, reviewer actions
without a session refused before any route, refusals to flooders held a moment, admin routes
refused on the public listener, request metrics, the answering site's header; and the intake
path answered right there."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from firebreak.claims.clock import Clock
from firebreak.claims.limits import MAX_BODY, scope_source
from firebreak.claims.partners import PartnerKeys
from firebreak.loopwatch import LOOP_STALL_BUCKETS
from firebreak.claims.settings import SESSION_COOKIE, Settings
from firebreak.throttle import Buckets


class AppMetrics:
    def __init__(self, site: str):
        self.registry = CollectorRegistry()
        self.requests = Counter("firebreak_app_requests_total", "HTTP requests", ["site", "route", "status"],
                                registry=self.registry)
        self.writes = Counter("firebreak_app_writes_total", "Report writes by outcome", ["site", "outcome"],
                              registry=self.registry)
        self.latency = Histogram("firebreak_app_request_seconds", "Request latency", ["site", "route"],
                                 registry=self.registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        # Every request refused before it did anything, by why: rate-limited, partner-key,
        # anonymous-review, not-public (an admin route asked for on the public listener),
        # admin-token, admin-throttled, body-too-large.
        self.refusals = Counter("firebreak_app_refusals_total", "Requests refused, by route and reason",
                                ["site", "route", "why"], registry=self.registry)
        self.held = Counter("firebreak_app_refusals_held_total",
                            "Refusals held for the refusal delay (held) or sent at once because the hold was full",
                            ["site", "how"], registry=self.registry)
        # One per webhook attempt this app made: delivered (a 2xx), failed (sent again after the
        # retry's backoff, by whichever site's app claims it) or abandoned (out of attempts).
        self.webhooks = Counter("firebreak_app_webhook_deliveries_total", "Webhook delivery attempts by outcome",
                                ["site", "outcome"], registry=self.registry)
        self.loop_stalls = Histogram("firebreak_event_loop_stall_seconds", "Times the event loop stopped turning "
                                     "for longer than half a second, by how long (the log has what it was doing)",
                                     ["site"], registry=self.registry, buckets=LOOP_STALL_BUCKETS)


# Reviewer actions: a POST here without a session cookie cannot be anyone's, so the edge refuses
# it (counted like the routes count theirs) before sessions, routing and form parsing, which cost
# four times as much: a flood of them is the cheapest one there is to send.
REVIEW_ACTION = re.compile(r"/review/(?:(bulk-approve)|reports/\d{1,18}/(decide))")
_COOKIE = SESSION_COOKIE.encode() + b"="
# Served only on the admin listener once there is one (FIREBREAK_ADMIN_BIND): the agent's hooks,
# the metrics and the API's documentation are nobody's business at the public door.
ADMIN_ONLY = re.compile(r"/(?:admin(?:/.*)?|metrics|docs(?:/.*)?|redoc|openapi\.json)")
# Limited like the portal's form (per person), not like partners' systems: a status lookup is a
# guess at a receipt and a contact.
PORTAL_POSTS = ("/report", "/status", "/api/reports/status")
INTAKE = "/api/reports"


def anonymous_review_action(method: str, path: str, cookie: bytes | None) -> str | None:
    """The reviewer action an anonymous request asks for (to refuse it at once), or None."""
    if method != "POST" or (cookie is not None and _COOKIE in cookie):
        return None
    m = REVIEW_ACTION.fullmatch(path)
    return (m.group(1) or m.group(2)) if m else None


def admin_only(path: str) -> bool:
    return ADMIN_ONLY.fullmatch(path) is not None


def bearer_key(authorization: bytes | None) -> str | None:
    """The key of an `Authorization: Bearer ...` header, or None without the header."""
    if authorization is None:
        return None
    return authorization.decode("latin-1").removeprefix("Bearer ").strip()


@dataclass
class Limits:
    """Who is limited how. A person's allowance (`portal`, per source) covers the form, status
    lookups and reports sent through the API without a key; `intake` is that same allowance
    unless the operator set FIREBREAK_API_RATE; a partner's key has its own (`partner`, per key)."""
    portal: Buckets
    intake: Buckets
    partner: Buckets
    partners: PartnerKeys


def limit_for(path: str, key: str | None, partners: PartnerKeys) -> tuple[str, str | None]:
    """Which allowance a POST to `path` spends: ("portal" | "intake" | "partner" | "bad-key" |
    "none", the partner's name or None). A key nobody was given is refused (and spends the
    source's intake allowance, so guessing keys is as slow as filing)."""
    if path in PORTAL_POSTS:
        return "portal", None
    if not path.startswith("/api/"):
        return "none", None
    if key is None:
        return "intake", None
    name = partners.partner(key)
    return ("partner", name) if name is not None else ("bad-key", None)


class RefusalHolder:
    """Holds a refusal for `delay` before it is sent. A flooding client that waits for each
    answer before its next request (most tools, and a person pressing reload) then costs one
    cheap refusal per connection per delay instead of as many as the door can carry, and takes
    that much less CPU from the intake beside it; a held request is a sleeping coroutine. Past
    `limit` held at once, refusals go out at once: holding is a courtesy to the machine, never a
    way for a flood to pin its memory. The clock's sleep is injected, so a test can see what was
    held without timing anything."""

    def __init__(self, delay: float, limit: int, clock: Clock):
        self.delay, self.limit, self.clock = delay, limit, clock
        self.held = 0       # being held now
        self.total_held = 0
        self.total_at_once = 0

    async def hold(self) -> bool:
        """Wait out the delay if there is room; returns whether this refusal was held."""
        if self.delay <= 0 or self.held >= self.limit:
            self.total_at_once += 1
            return False
        self.held += 1
        self.total_held += 1
        try:
            await self.clock.sleep(self.delay)
        finally:
            self.held -= 1
        return True


class Edge:
    """Body-size and rate limits, request metrics and the answering site's header, as plain ASGI:
    Starlette's decorator middleware costs a task and a stream copy per request, which at a
    thousand reports a second is most of a core."""

    def __init__(self, app: Any, settings: Settings, metrics: AppMetrics, limits: Limits | None, holder: RefusalHolder,
                 clock: Clock, fast: dict | None = None,
                 anonymous: Callable[[str, str], Awaitable[None]] | None = None, public_only: bool = False):
        self.app, self.settings, self.metrics, self.limits = app, settings, metrics, limits
        self.holder, self.clock = holder, clock
        self.fast = fast or {}  # POST paths answered here, without routing, sessions or dependencies
        self.anonymous = anonymous  # counts a refused anonymous reviewer action (action, source)
        self.public_only = public_only  # the public listener of an app with an admin listener
        self.site_header = (b"x-firebreak-site", settings.site.encode())

    def _source(self, scope: dict) -> str:
        return scope_source(scope, self.settings.trusted_proxies)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        path = scope["path"]
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"},
                                      why=("other", "body-too-large"))
        if self.public_only and admin_only(path):
            return await self._refuse(send, 404, {"error": "not found"}, why=("admin", "not-public"))
        if self.anonymous is not None and (
                action := anonymous_review_action(scope["method"], path, headers.get(b"cookie"))):
            await self.anonymous(action, self._source(scope))
            self.metrics.requests.labels(self.settings.site, "/review/*", "401").inc()
            await self._hold()
            return await self._refuse(send, 401, {"error": "sign in at /review/login first"},
                                      why=("/review/*", "anonymous-review"))
        if scope["method"] == "POST" and self.limits is not None and not await self._within_limits(scope, headers,
                                                                                                   send):
            return None
        t0 = self.clock.monotonic()
        status = [500]

        async def send_with_site(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), self.site_header]
            await send(message)

        handler = self.fast.get(path) if scope["method"] == "POST" else None
        try:
            if handler is not None:
                await self._fast(handler, scope, receive, send, send_with_site, headers)
            else:
                await self.app(scope, *self._capped(receive, send_with_site))
        finally:
            route = path if handler is not None else getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(self.settings.site, route, str(status[0])).inc()
            self.metrics.latency.labels(self.settings.site, route).observe(self.clock.monotonic() - t0)

    async def _within_limits(self, scope: dict, headers: dict, send: Any) -> bool:
        """Spends the request's allowance; when there is none, sends the refusal and says False."""
        assert self.limits is not None
        path = scope["path"]
        route = path if path in PORTAL_POSTS or path == INTAKE else "/api/*"  # labels from a fixed set
        which, partner = limit_for(path, bearer_key(headers.get(b"authorization")) if path == INTAKE else None,
                                   self.limits.partners)
        if which == "none":
            return True
        now, source = self.clock.monotonic(), self._source(scope)
        if which == "partner":
            if self.limits.partner.allow(str(partner), now):
                return True
            await self._refuse(send, 429, {"error": f"partner {partner}: over its {self.settings.partner_rate:g} "
                                                    "reports a second; wait and retry"}, [(b"retry-after", b"1")],
                               why=(route, "rate-limited"))
            return False
        buckets = self.limits.portal if which == "portal" else self.limits.intake
        allowed = buckets.allow(source, now)
        if allowed and which != "bad-key":
            return True
        await self._hold()
        if not allowed:
            await self._refuse(send, 429, {"error": "too many requests from this address; wait and retry"},
                               [(b"retry-after", b"60")], why=(route, "rate-limited"))
        else:
            await self._refuse(send, 401, {"error": "this partner key is not known here; file without an "
                                                    "Authorization header (a person's limits), or ask the operator "
                                                    "for a partner key"}, why=(route, "partner-key"))
        return False

    async def _fast(self, handler: Any, scope: dict, receive: Any, send: Any, send_with_site: Any,
                    headers: dict) -> None:
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, chunks)) > MAX_BODY:  # sent without a length, or lying about it
                return await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"},
                                          why=(scope["path"], "body-too-large"))
        key = headers.get(b"idempotency-key")
        response = await handler(b"".join(chunks), key.decode("latin-1") if key is not None else None)
        await response(scope, receive, send_with_site)

    async def _hold(self) -> None:
        held = await self.holder.hold()
        self.metrics.held.labels(self.settings.site, "held" if held else "at_once").inc()

    def _capped(self, receive: Any, send: Any) -> tuple[Any, Any]:
        """receive and send for every other route: a body sent without a length (chunked), or
        longer than it said, is cut at MAX_BODY with a 413, and the app, told the client left,
        sends nothing after it."""
        got, refused = [0], [False]

        async def capped_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                got[0] += len(message.get("body", b""))
                if got[0] > MAX_BODY and not refused[0]:
                    refused[0] = True
                    await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"},
                                       why=("other", "body-too-large"))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused[0]:
                await send(message)
        return capped_receive, guarded_send

    async def _refuse(self, send: Any, code: int, body: dict, extra: list | None = None,
                      why: tuple[str, str] | None = None) -> None:
        if why is not None:
            self.metrics.refusals.labels(self.settings.site, *why).inc()
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                self.site_header, *(extra or [])]})
        await send({"type": "http.response.body", "body": data})
