"""The reference service's routes: intake, status, the release hook, health, metrics; with the
portal and the reviewer console registered beside them. The parts live in their own modules:
settings, connection (racing hosts, deadlines, steady reconnects), store (group commit), edge
(limits and metrics)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firebreak.claims.edge import AppMetrics, Edge
from firebreak.claims.limits import portal_buckets, scope_source
from firebreak.claims.models import ReportIn, ReportOut, StatusOut
from firebreak.claims.settings import DEFAULT_POLICY, SESSION_COOKIE, Settings
from firebreak.claims.store import Store
from firebreak.errors import AnswerUnknown, KeyReused, OutcomeUnknown, Overloaded, ReportRefused
from firebreak.throttle import Buckets

__all__ = ["DEFAULT_POLICY", "Settings", "create_app"]


def create_app(settings: Settings) -> FastAPI:
    store = Store(settings)
    metrics = AppMetrics(settings.site)
    log = logging.getLogger("firebreak.claims")

    def admin_allowed(authorization: str | None) -> bool:
        """The service's admin token (its own tools, and its site's agent) as a Bearer token."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        return bool(settings.admin_token) and secrets.compare_digest(token, settings.admin_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await store.open()
        tasks = [asyncio.create_task(job()) for job in app.state.background]
        yield
        for t in tasks:
            t.cancel()
        await store.close()

    app = FastAPI(title="Firebreak claims", version="1", lifespan=lifespan,
                  description="Damage reports after a site outage: intake, status, review.")
    app.state.store = store
    app.state.background = []  # coroutines run for the app's life (the review's verifier)
    if not settings.session_secret:
        # Sessions and forms then work only at this one app: fine for a test, wrong for sites.
        log.warning("FIREBREAK_SESSION_SECRET is not set; using a random one for this process only")
        settings.session_secret = secrets.token_urlsafe(32)
    portal = portal_buckets(settings.portal_rate)
    api_buckets = Buckets(rate=settings.api_rate, burst=max(1.0, settings.api_rate))
    login_buckets = Buckets(rate=10 / 60.0, burst=10)

    def source_of(request: Request) -> str:
        return scope_source(request.scope, settings.trusted_proxies)

    from firebreak.claims.sources import PolicySource
    policy_source = PolicySource(settings.policy)

    async def intake(body: bytes, idempotency_key: str | None) -> Response:
        """POST /api/reports, served by Edge before the framework's layers (and by the route)."""
        if idempotency_key is not None and len(idempotency_key) > 200:
            return refused("Idempotency-Key", "at most 200 characters")
        try:
            report = ReportIn.model_validate_json(body)
        except ValidationError as e:
            return invalid(e)
        services = policy_source().services
        if report.service not in services:
            return refused("service", f"not a service this compensation scheme covers; one of {', '.join(services)}")
        try:
            row, replayed, who = await store.submit(report, idempotency_key)
        except KeyReused as e:
            # 422, as the IETF's Idempotency-Key draft asks for a key reused with another payload:
            # the request is well-formed, but cannot be processed under that key.
            metrics.writes.labels(settings.site, "key_reused").inc()
            return refused("Idempotency-Key", f"{e}; nothing was stored. Send a new key for a new report, "
                                              "or the same report to get its receipt again")
        except ReportRefused as e:
            metrics.writes.labels(settings.site, "invalid").inc()
            return refused("body", f"the database refused its values ({e}); nothing was stored. "
                                   "Correct the report and send it with a new Idempotency-Key")
        except Overloaded as e:
            metrics.writes.labels(settings.site, "refused").inc()
            return JSONResponse({"error": f"too many reports waiting for the database ({e}); nothing was stored",
                                 "retry": "send the same request again in a few seconds with the same Idempotency-Key"},
                                status_code=503, headers={"Retry-After": "5"})
        except OutcomeUnknown as e:
            metrics.writes.labels(settings.site, "unknown").inc()
            log.warning("write outcome unknown: %s", e)
            return JSONResponse({"error": "database unavailable; the report may or may not be stored",
                                 "outcome": "unknown", "detail": str(e),
                                 "retry": "send the same request again with the same Idempotency-Key"},
                                status_code=503, headers={"Retry-After": "1"})
        headers = {"X-Firebreak-Primary": who["server"],
                   "X-Firebreak-Timeline": str(who["timeline"]), "X-Firebreak-System-Id": who["system_id"]}
        metrics.writes.labels(settings.site, "replayed" if replayed else "acknowledged").inc()
        if replayed:
            headers["Idempotent-Replay"] = "true"
        return Response(ReportOut.model_validate(row).model_dump_json(), status_code=201, headers=headers,
                        media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry).decode())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(exc)

    def openapi() -> dict:
        # ReportIn is read by the intake handler itself, so FastAPI does not see it: add it.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            model = ReportIn.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(model.pop("$defs", {}))
            schemas["ReportIn"] = model
            # which services a report may name: the policy's, as intake enforces (at start-up)
            model["properties"]["service"]["enum"] = list(policy_source().services)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # The body is validated here rather than by FastAPI's dependency machinery: the intake path
    # runs a thousand times a second, and pydantic's JSON parser does the same job at a
    # fraction of the cost. The schema is still published for clients and fuzzers.
    @app.post("/api/reports", status_code=201, response_model=ReportOut,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/ReportIn"}}}},
                  "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                  "schema": {"type": "string", "maxLength": 200}}]},
              responses={
                  201: {"description": "stored (or, with the same key and report, stored before)",
                        # OpenAPI links: what a client (and schemathesis' stateful mode) does next
                        # with the answer: look the report up by receipt and contact.
                        "links": {"LookUpStatus": {
                            "operationId": "report_status_api_reports_status_post",
                            "requestBody": {"receipt": "$response.body#/receipt",
                                            "contact": "$request.body#/contact"}}}},
                  422: {"description": "invalid report: every field that is wrong, and why"},
                  503: {"description": "outcome unknown: send the same request again with the same key"}})
    async def submit(request: Request) -> Response:
        return await intake(await request.body(), request.headers.get("idempotency-key"))

    @app.exception_handler(AnswerUnknown)
    async def _unknown(request: Request, exc: AnswerUnknown) -> JSONResponse:
        return JSONResponse({"error": "temporarily unavailable: the answer is not known right now; "
                                      "try again in a minute (nothing you sent was lost)"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.get("/api/reports/{report_id}", response_model=ReportOut,
             responses={401: {"description": "the service's admin token is required"},
                        503: {"description": "no database server answered: unknown, try again"}})
    async def get_report(report_id: int, authorization: str | None = Header(default=None)) -> JSONResponse:
        """A report by its number: for the service's own tools (drills, operators), never the
        public. Numbers are sequential and the answer holds the receipt, which with a contact
        opens the report's status: a reporter uses POST /api/reports/status instead."""
        if not admin_allowed(authorization):
            return JSONResponse({"error": "reading a report by its number needs the service's admin token; "
                                          "a reporter looks a report up by receipt and contact "
                                          "(POST /api/reports/status)"}, status_code=401)
        row = await store.get(report_id)
        if row is None:
            return JSONResponse({"error": f"no report {report_id}"}, status_code=404)
        return JSONResponse(ReportOut(**row).model_dump(mode="json"))

    app.state.release = {"version": "initial"}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive", "site": settings.site, "version": app.state.release.get("version")}

    @app.get("/version")
    async def version() -> dict:
        return {"site": settings.site, **app.state.release}

    @app.post("/admin/release", include_in_schema=False)
    async def release(request: Request, authorization: str | None = Header(default=None)) -> JSONResponse:
        # Pushed by the site's agent from the release store (a copy in every site).
        if not admin_allowed(authorization):
            return JSONResponse({"error": "not allowed"}, status_code=403)
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("version"), str):
                raise ValueError("a release needs a version")
        except ValueError as e:
            return JSONResponse({"error": f"invalid release: {e}"}, status_code=422)
        app.state.release = {k: body[k] for k in ("version", "notes", "created") if k in body}
        return JSONResponse({"ok": True, "site": settings.site, "version": body["version"]})

    @app.post("/admin/primary-moved", include_in_schema=False)
    async def primary_moved(authorization: str | None = Header(default=None)) -> JSONResponse:
        # Pushed by the site's agent when writes leave the server they went to (store.hang_up).
        if not admin_allowed(authorization):
            return JSONResponse({"error": "not allowed"}, status_code=403)
        store.hang_up()
        log.info("the site's agent says writes moved: pooled connections to the primary made before now are dropped")
        return JSONResponse({"ok": True, "site": settings.site})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ok = await store.can_write()
        return JSONResponse({"ready": ok, "site": settings.site}, status_code=200 if ok else 503)

    @app.post("/api/reports/status", response_model=StatusOut,
              responses={404: {"description": "no such report"},
                         503: {"description": "no database server answered: unknown, try again"}})
    async def report_status(query: StatusQuery) -> JSONResponse:
        """A report's status, by its receipt number and the contact given with it."""
        row = await store.lookup(query.receipt.upper(), query.contact)
        if row is None:
            return JSONResponse({"error": "no report with this receipt number and contact"}, status_code=404)
        return JSONResponse(StatusOut(**row).model_dump(mode="json"))

    from starlette.middleware.sessions import SessionMiddleware

    from firebreak.claims.portal import register_portal
    from firebreak.claims.review import register_review
    from firebreak.claims.sources import OutageSource

    register_portal(app, store, settings, policy_source)
    anonymous = register_review(app, store, settings, policy_source, OutageSource(settings), login_buckets,
                                source_of)
    app.add_middleware(SessionMiddleware, secret_key=settings.session_secret, session_cookie=SESSION_COOKIE,
                       max_age=8 * 3600, same_site="strict", https_only=settings.secure_cookies)
    # Outermost (added last): intake and refusals are answered before sessions are even decoded.
    app.add_middleware(Edge, settings=settings, metrics=metrics, api=api_buckets, portal=portal,
                       fast={"/api/reports": intake}, anonymous=anonymous)
    return app


def refused(field: str, reason: str) -> JSONResponse:
    """422 for a report refused on one field, in the shape of validation errors."""
    return JSONResponse({"error": "invalid report", "errors": [{"field": field, "reason": reason}]}, status_code=422)


def invalid(exc: ValidationError | RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body", "reason": e["msg"]}
              for e in exc.errors()]
    return JSONResponse({"error": "invalid report", "errors": errors}, status_code=422)


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    receipt: str = Field(min_length=4, max_length=20)
    contact: str = Field(min_length=3, max_length=200)
