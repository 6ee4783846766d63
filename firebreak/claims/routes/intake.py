"""The API: a report in (`POST /api/reports`, answered by the edge before routing, see
edge.Edge.fast), a report's status by receipt and contact, and a report by its number for the
service's own tools."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firebreak.claims.models import ReportIn, ReportOut, StatusOut
from firebreak.claims.routes.deps import Services, Svc
from firebreak.errors import KeyReused, OutcomeUnknown, Overloaded, ReportRefused

log = logging.getLogger("firebreak.claims")
router = APIRouter()


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


async def take_report(svc: Services, body: bytes, idempotency_key: str | None) -> Response:
    """POST /api/reports: validate, store (group commit), answer with the receipt."""
    if idempotency_key is not None and len(idempotency_key) > 200:
        return refused("Idempotency-Key", "at most 200 characters")
    try:
        report = ReportIn.model_validate_json(body)
    except ValidationError as e:
        return invalid(e)
    services = svc.policy().services
    if report.service not in services:
        return refused("service", f"not a service this compensation scheme covers; one of {', '.join(services)}")
    try:
        row, replayed, who = await svc.store.submit(report, idempotency_key)
    except (KeyReused, ReportRefused, Overloaded, OutcomeUnknown) as e:
        return not_stored(svc, e)
    headers = {"X-Firebreak-Primary": who["server"],
               "X-Firebreak-Timeline": str(who["timeline"]), "X-Firebreak-System-Id": who["system_id"]}
    svc.metrics.writes.labels(svc.settings.site, "replayed" if replayed else "acknowledged").inc()
    if replayed:
        headers["Idempotent-Replay"] = "true"
    return Response(ReportOut.model_validate(row).model_dump_json(), status_code=201, headers=headers,
                    media_type="application/json")


def not_stored(svc: Services, e: Exception) -> JSONResponse:
    """The answer to a report the store did not acknowledge, by why."""
    writes = svc.metrics.writes.labels
    site = svc.settings.site
    if isinstance(e, KeyReused):
        # 422, as the IETF's Idempotency-Key draft asks for a key reused with another payload:
        # the request is well-formed, but cannot be processed under that key.
        writes(site, "key_reused").inc()
        return refused("Idempotency-Key", f"{e}; nothing was stored. Send a new key for a new report, "
                                          "or the same report to get its receipt again")
    if isinstance(e, ReportRefused):
        writes(site, "invalid").inc()
        return refused("body", f"the database refused its values ({e}); nothing was stored. "
                               "Correct the report and send it with a new Idempotency-Key")
    if isinstance(e, Overloaded):
        writes(site, "refused").inc()
        return JSONResponse({"error": f"too many reports waiting for the database ({e}); nothing was stored",
                             "retry": "send the same request again in a few seconds with the same Idempotency-Key"},
                            status_code=503, headers={"Retry-After": "5"})
    writes(site, "unknown").inc()
    log.warning("write outcome unknown: %s", e)
    return JSONResponse({"error": "database unavailable; the report may or may not be stored",
                         "outcome": "unknown", "detail": str(e),
                         "retry": "send the same request again with the same Idempotency-Key"},
                        status_code=503, headers={"Retry-After": "1"})


# The body is validated by take_report rather than by FastAPI's dependency machinery: the intake
# path runs a thousand times a second, and pydantic's JSON parser does the same job at a fraction
# of the cost. The schema is still published for clients and fuzzers (app.openapi_with_intake).
@router.post("/api/reports", status_code=201, response_model=ReportOut,
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
                 401: {"description": "an Authorization header with a partner key nobody was given"},
                 422: {"description": "invalid report: every field that is wrong, and why"},
                 429: {"description": "over the per-source limit (a person's), or the partner key's"},
                 503: {"description": "outcome unknown: send the same request again with the same key"}})
async def submit(request: Request, svc: Svc) -> Response:
    return await take_report(svc, await request.body(), request.headers.get("idempotency-key"))


@router.get("/api/reports/{report_id}", response_model=ReportOut,
            responses={401: {"description": "the service's admin token is required"},
                       429: {"description": "too many failed admin-token attempts from this address"},
                       503: {"description": "no database server answered: unknown, try again"}})
async def get_report(report_id: int, request: Request, svc: Svc,
                     authorization: str | None = Header(default=None)) -> JSONResponse:
    """A report by its number: for the service's own tools (drills, operators), never the
    public. Numbers are sequential and the answer holds the receipt, which with a contact
    opens the report's status: a reporter uses POST /api/reports/status instead."""
    verdict = svc.admin.check(authorization, svc.source(request), "/api/reports/{report_id}")
    if verdict.why == "throttled":
        return JSONResponse({"error": "too many failed admin-token attempts from this address; wait a minute"},
                            status_code=429, headers={"Retry-After": str(max(1, round(verdict.retry_after)))})
    if not verdict.ok:
        return JSONResponse({"error": "reading a report by its number needs the service's admin token; "
                                      "a reporter looks a report up by receipt and contact "
                                      "(POST /api/reports/status)"}, status_code=401)
    row = await svc.store.get(report_id)
    if row is None:
        return JSONResponse({"error": f"no report {report_id}"}, status_code=404)
    return JSONResponse(ReportOut(**row).model_dump(mode="json"))


@router.post("/api/reports/status", response_model=StatusOut,
             responses={404: {"description": "no such report"},
                        503: {"description": "no database server answered: unknown, try again"}})
async def report_status(query: StatusQuery, svc: Svc) -> JSONResponse:
    """A report's status, by its receipt number and the contact given with it."""
    row = await svc.store.lookup(query.receipt.upper(), query.contact)
    if row is None:
        return JSONResponse({"error": "no report with this receipt number and contact"}, status_code=404)
    return JSONResponse(StatusOut(**row).model_dump(mode="json"))
