"""The claims service's ASGI edge: body-size and rate limits, reviewer actions without a session
refused before any route, refusals to flooders held a moment, request metrics, the answering
site's header; and the intake path answered right there."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from firebreak.claims.limits import MAX_BODY, scope_source
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


# Reviewer actions: a POST here without a session cookie cannot be anyone's, so the edge refuses
# it (counted like the routes count theirs) before sessions, routing and form parsing, which cost
# four times as much: a flood of them is the cheapest one there is to send.
REVIEW_ACTION = re.compile(r"/review/(?:(bulk-approve)|reports/\d{1,18}/(decide))")
_COOKIE = SESSION_COOKIE.encode() + b"="


def anonymous_review_action(method: str, path: str, cookie: bytes | None) -> str | None:
    """The reviewer action an anonymous request asks for (to refuse it at once), or None."""
    if method != "POST" or (cookie is not None and _COOKIE in cookie):
        return None
    m = REVIEW_ACTION.fullmatch(path)
    return (m.group(1) or m.group(2)) if m else None


class Edge:
    """Body-size and rate limits, request metrics and the answering site's header, as plain ASGI:
    Starlette's decorator middleware costs a task and a stream copy per request, which at a
    thousand reports a second is most of a core."""

    def __init__(self, app: Any, settings: Settings, metrics: AppMetrics, api: Buckets, portal: Buckets,
                 fast: dict | None = None, anonymous: Callable[[str, str], Awaitable[None]] | None = None):
        self.app, self.settings, self.metrics, self.api, self.portal = app, settings, metrics, api, portal
        self.fast = fast or {}  # POST paths answered here, without routing, sessions or dependencies
        self.anonymous = anonymous  # counts a refused anonymous reviewer action (action, source)
        self.held = 0  # refusals being slowed down now
        self.site_header = (b"x-firebreak-site", settings.site.encode())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"})
        if self.anonymous is not None and (
                action := anonymous_review_action(scope["method"], scope["path"], headers.get(b"cookie"))):
            await self.anonymous(action, scope_source(scope, self.settings.trusted_proxies))
            self.metrics.requests.labels(self.settings.site, "/review/*", "401").inc()
            await self._slow_down()
            return await self._refuse(send, 401, {"error": "sign in at /review/login first"})
        if scope["method"] == "POST":
            path = scope["path"]
            # A status lookup is a guess at a receipt and a contact: limited like the portal's form
            # (per person), not like partners' intake systems.
            buckets = (self.portal if path in ("/report", "/status", "/api/reports/status")
                       else self.api if path.startswith("/api/") else None)
            if buckets is not None:
                if not buckets.allow(scope_source(scope, self.settings.trusted_proxies), time.monotonic()):
                    await self._slow_down()
                    return await self._refuse(send, 429, {"error": "too many requests from this address; "
                                                                   "wait and retry"}, [(b"retry-after", b"60")])
        t0 = time.monotonic()
        status = [500]

        async def send_with_site(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), self.site_header]
            await send(message)

        handler = self.fast.get(scope["path"]) if scope["method"] == "POST" else None
        try:
            if handler is not None:
                chunks, more = [], True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
                    if sum(map(len, chunks)) > MAX_BODY:  # sent without a length, or lying about it
                        return await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"})
                key = headers.get(b"idempotency-key")
                response = await handler(b"".join(chunks), key.decode("latin-1") if key is not None else None)
                await response(scope, receive, send_with_site)
            else:
                await self.app(scope, *self._capped(receive, send_with_site))
        finally:
            path = scope["path"] if handler is not None else getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(self.settings.site, path, str(status[0])).inc()
            self.metrics.latency.labels(self.settings.site, path).observe(time.monotonic() - t0)

    async def _slow_down(self) -> None:
        """Hold a refusal for `refusal_delay` before sending it. A flooding client that waits for
        each answer before its next request (most tools, and a person pressing reload) then costs
        one cheap refusal per connection per delay instead of as many as the door can carry, and
        takes that much less CPU from the intake beside it; a held request is a sleeping
        coroutine. Past `refusal_hold` held at once, refusals go out at once: holding is a
        courtesy to the machine, never a way for a flood to pin its memory."""
        if self.settings.refusal_delay <= 0 or self.held >= self.settings.refusal_hold:
            return
        self.held += 1
        try:
            await asyncio.sleep(self.settings.refusal_delay)
        finally:
            self.held -= 1

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
                    await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"})
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused[0]:
                await send(message)
        return capped_receive, guarded_send

    async def _refuse(self, send: Any, code: int, body: dict, extra: list | None = None) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                self.site_header, *(extra or [])]})
        await send({"type": "http.response.body", "body": data})
