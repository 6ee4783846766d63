"""What the routes share, built once per app (app.build) and handed to each route as a typed
dependency: `svc: Svc` in a route's signature, never a closure over a factory's locals."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from firebreak.claims.clock import Clock
from firebreak.claims.edge import AppMetrics, Limits, RefusalHolder
from firebreak.claims.guards import AdminGuard
from firebreak.claims.limits import scope_source
from firebreak.claims.review import AnonymousTally
from firebreak.claims.review_store import ReviewStore
from firebreak.claims.settings import Settings
from firebreak.claims.sources import CreditSource, OutageSource, PolicySource
from firebreak.claims.store import Store
from firebreak.errors import Denied
from firebreak.throttle import Buckets

log = logging.getLogger("firebreak.review")


class Refused(Denied):
    """A route's refusal, answered as {"error": message} with `status` (and headers such as
    Retry-After) by the app's handler."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, message)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status, headers=self.headers)


@dataclass
class Services:
    settings: Settings
    clock: Clock
    store: Store
    reviews: ReviewStore
    metrics: AppMetrics
    policy: PolicySource
    outages: OutageSource
    admin: AdminGuard
    limits: Limits
    holder: RefusalHolder
    login_limit: Buckets
    anonymous: AnonymousTally
    credits: CreditSource
    release: dict = field(default_factory=lambda: {"version": "initial"})
    pages: dict = field(default_factory=dict)  # public pages rendered lately (routes/incidents.py)

    def source(self, request: Request) -> str:
        """The address to hold responsible for a request (the client, or what our door saw)."""
        return scope_source(request.scope, self.settings.trusted_proxies)

    async def refused_anonymous(self, action: str, source: str) -> None:
        """Anonymous refusals are counted and written as one row a minute, not one synchronous
        row per request: a flood must not grow the database or hold intake's connections."""
        summary = self.anonymous.note(action, source, self.clock.monotonic())
        if summary is not None:
            log.warning("refused %d anonymous review requests in the last minute: %s", summary["count"],
                        summary["actions"])
            await self.audit(source, "anonymous", "refused", "denied: not signed in", [], summary)

    async def audit(self, client: str, actor: str, action: str, outcome: str, ids: list[int], detail: dict) -> None:
        try:
            await self.reviews.audit(client, actor, action, outcome, ids, detail)
        except Exception as e:  # noqa: BLE001 - the refusal or decision stands even if its record fails
            log.error("could not write the review audit log: %s", e)


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def require_admin(request: Request, svc: Svc) -> None:
    """The service's admin token, or a 403 (429 after too many failures from one source)."""
    route = getattr(request.scope.get("route"), "path", request.url.path)
    verdict = svc.admin.check(request.headers.get("authorization"), svc.source(request), route)
    if verdict.why == "throttled":
        raise Refused(429, "too many failed admin-token attempts from this address; wait a minute",
                      {"Retry-After": str(max(1, round(verdict.retry_after)))})
    if not verdict.ok:
        raise Refused(403, "not allowed")


Admin = Annotated[None, Depends(require_admin)]
