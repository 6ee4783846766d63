"""The reference service, put together: the shared parts (routes/deps.Services), the routers
(intake, portal, review, health; admin and metrics), the sessions and the edge, on one listener,
or two when FIREBREAK_ADMIN_BIND names an address for the admin one. The parts live in their own
modules: settings, connection (racing hosts, deadlines, steady reconnects), store (group
commit), review_store (the console's SQL), edge (limits and metrics), guards (the admin token)."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.middleware.sessions import SessionMiddleware

from firebreak.claims.clock import SYSTEM, Clock
from firebreak.claims.edge import AppMetrics, Edge, Limits, RefusalHolder
from firebreak.claims.guards import AdminGuard
from firebreak.claims.limits import portal_buckets
from firebreak.claims.notifier import Notifier
from firebreak.claims.models import ReportIn
from firebreak.claims.partners import PartnerKeys
from firebreak.claims.review import AnonymousTally
from firebreak.claims.review_store import ReviewStore
from firebreak.claims.routes import admin, health, incidents, intake, portal, review
from firebreak.claims.routes.deps import Refused, Services
from firebreak.claims.routes.intake import StatusQuery, invalid, refused
from firebreak.claims.settings import DEFAULT_POLICY, SESSION_COOKIE, Settings
from firebreak.claims.sources import CreditSource, OutageSource, PolicySource
from firebreak.claims.store import Store
from firebreak.claims.subscribers import Webhooks, load_webhooks
from firebreak.claims.verifier import verify_forever
from firebreak.errors import AnswerUnknown, OutcomeUnknown
from firebreak.loopwatch import LoopWatch
from firebreak.throttle import Buckets

__all__ = ["DEFAULT_POLICY", "ClaimsApps", "Settings", "StatusQuery", "build", "create_app", "invalid", "refused"]
log = logging.getLogger("firebreak.claims")
DESCRIPTION = "Damage reports after a site outage: intake, status, review."


@dataclass(frozen=True)
class ClaimsApps:
    public: FastAPI
    admin: FastAPI | None  # None: the admin routes are on the public app (no FIREBREAK_ADMIN_BIND)
    services: Services


def create_app(settings: Settings, clock: Clock = SYSTEM) -> FastAPI:
    """The public app (with the admin routes on it unless settings.admin_bind is set)."""
    return build(settings, clock).public


def services_of(settings: Settings, clock: Clock) -> Services:
    if not settings.session_secret:
        # Sessions and forms then work only at this one app: fine for a test, wrong for sites.
        log.warning("FIREBREAK_SESSION_SECRET is not set; using a random one for this process only")
        settings.session_secret = secrets.token_urlsafe(32)
    store = Store(settings)
    metrics = AppMetrics(settings.site)
    portal_limit = portal_buckets(settings.portal_rate)
    if settings.api_rate is not None:
        log.warning("FIREBREAK_API_RATE=%g: reports without a partner key get %g a second per address, not a "
                    "person's allowance", settings.api_rate, settings.api_rate)
    limits = Limits(portal=portal_limit,
                    intake=portal_limit if settings.api_rate is None
                    else Buckets(rate=settings.api_rate, burst=max(1.0, settings.api_rate)),
                    partner=Buckets(rate=settings.partner_rate, burst=max(1.0, settings.partner_rate)),
                    partners=PartnerKeys.load(settings.partner_keys) if settings.partner_keys else PartnerKeys())
    policy = PolicySource(settings.policy)
    return Services(
        settings=settings, clock=clock, store=store, reviews=ReviewStore(store, settings.site, settings.review_deadline),
        metrics=metrics, policy=policy, outages=OutageSource(settings, policy), credits=CreditSource(settings.credit_dir),
        admin=AdminGuard(settings.admin_token, settings.site, metrics, clock, settings.admin_failures_per_minute),
        limits=limits, holder=RefusalHolder(settings.refusal_delay, settings.refusal_hold, clock),
        login_limit=Buckets(rate=10 / 60.0, burst=10), anonymous=AnonymousTally(settings.anonymous_audit_every))


def build(settings: Settings, clock: Clock = SYSTEM) -> ClaimsApps:
    svc = services_of(settings, clock)
    # Checked now, whole: a bad subscribers file stops the service (exit 2) rather than a notifier later.
    hooks = load_webhooks(settings.webhooks) if settings.webhooks else None
    separate = bool(settings.admin_bind)
    public = public_app(svc, with_admin=not separate, webhooks=hooks)
    return ClaimsApps(public, admin_app(svc, public) if separate else None, svc)


def public_app(svc: Services, with_admin: bool, webhooks: Webhooks | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watch = LoopWatch(on_stall=svc.metrics.loop_stalls.labels(svc.settings.site).observe)
        watch.start()
        await svc.store.open()
        verifier = asyncio.create_task(verify_forever(svc.store, svc.reviews, svc.policy, svc.outages))
        # The webhooks are sent from here, in the background, as the public record sees the
        # incidents: never from a request, which writes nothing and waits for no subscriber.
        notifier = Notifier(webhooks, svc.store, functools.partial(incidents.view_of, svc), svc.settings.site,
                            svc.clock, svc.settings.review_deadline,
                            counted=lambda outcome: svc.metrics.webhooks.labels(svc.settings.site, outcome).inc()
                            ) if webhooks else None
        notifying = asyncio.create_task(notifier.run()) if notifier else None
        yield
        verifier.cancel()
        if notifier and notifying:
            await notifier.stop(notifying)
        await svc.store.close()
        watch.stop()

    docs = {} if with_admin else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="Firebreak claims", version="1", lifespan=lifespan, description=DESCRIPTION, **docs)
    app.state.services = svc
    handle_errors(app)
    app.openapi = functools.partial(openapi_with_intake, app, svc)  # type: ignore[method-assign]
    for r in (intake.router, health.router, portal.router, incidents.router, review.router) + ((admin.router,) if with_admin else ()):
        app.include_router(r)
    app.add_middleware(SessionMiddleware, secret_key=svc.settings.session_secret, session_cookie=SESSION_COOKIE,
                       max_age=8 * 3600, same_site="strict", https_only=svc.settings.secure_cookies)
    # Outermost (added last): intake and refusals are answered before sessions are even decoded.
    app.add_middleware(Edge, settings=svc.settings, metrics=svc.metrics, limits=svc.limits, holder=svc.holder,
                       clock=svc.clock, fast={"/api/reports": functools.partial(intake.take_report, svc)},
                       anonymous=svc.refused_anonymous, public_only=not with_admin)
    return app


def admin_app(svc: Services, public: FastAPI) -> FastAPI:
    """The admin listener's app: the agent's hooks, /metrics, and the public API's documentation."""
    app = FastAPI(title="Firebreak claims (admin)", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services, app.state.public = svc, public
    handle_errors(app)
    for r in (admin.router, admin.docs, health.router):
        app.include_router(r)
    app.add_middleware(Edge, settings=svc.settings, metrics=svc.metrics, limits=None, holder=svc.holder,
                       clock=svc.clock)
    return app


def handle_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(exc)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        return exc.response()

    @app.exception_handler(AnswerUnknown)
    async def _unknown(request: Request, exc: AnswerUnknown) -> JSONResponse:
        return JSONResponse({"error": "temporarily unavailable: the answer is not known right now; "
                                      "try again in a minute (nothing you sent was lost)"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(OutcomeUnknown)
    async def _outcome(request: Request, exc: OutcomeUnknown) -> JSONResponse:
        return JSONResponse({"error": "the database did not answer in time: what you asked for may or may not "
                                      "have been done; reload the page to see, then try again"},
                            status_code=503, headers={"Retry-After": "5"})


def openapi_with_intake(app: FastAPI, svc: Services) -> dict:
    """The schema, with ReportIn: the intake handler reads the body itself, so FastAPI does not
    see the model."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        model = ReportIn.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(model.pop("$defs", {}))
        schemas["ReportIn"] = model
        # which services a report may name: the policy's, as intake enforces (at start-up)
        model["properties"]["service"]["enum"] = list(svc.policy().services)
        app.openapi_schema = doc
    return app.openapi_schema
