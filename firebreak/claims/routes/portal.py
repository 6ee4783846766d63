"""The public portal: the report form (Korean by default, English), the receipt, and the status
page. Server-rendered, so it works on any phone without JavaScript; a small script adds
validation as you type with the same messages the server gives."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import ValidationError

from firebreak.claims.i18n import EVIDENCE, LANGS, T, pick_lang, t
from firebreak.claims.models import REPORTER_KINDS, ReportIn
from firebreak.claims.portal import FORM_MAX_AGE, form_errors, report_fields
from firebreak.claims.routes.deps import Services, Svc
from firebreak.errors import AnswerUnknown, KeyReused, OutcomeUnknown, Overloaded, ReportRefused

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))


@functools.lru_cache(maxsize=4)
def signer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="firebreak-report-form")


def page(request: Request, name: str, lang: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    r = templates.TemplateResponse(request, name, {"lang": lang, "T": {k: v[lang] for k, v in T.items()},
                                                   "other": "en" if lang == "ko" else "ko", **ctx}, status_code=status)
    r.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", httponly=True)
    return r


def form_page(request: Request, svc: Services, lang: str, *, values: dict | None = None, errors: dict | None = None,
              key: str | None = None, banner: str | None = None, status: int = 200) -> HTMLResponse:
    return page(request, "report_form.html", lang, status, kinds=REPORTER_KINDS, services=svc.policy().services,
                evidence=EVIDENCE, values=values or {}, errors=errors or {}, banner=banner,
                form_key=key or signer(svc.settings.session_secret).dumps(uuid.uuid4().hex))


def form_language(form: Any) -> str:
    return form.get("language") if form.get("language") in LANGS else "ko"


@router.get("/", response_class=HTMLResponse)
async def report_form(request: Request, svc: Svc, lang: str | None = None) -> HTMLResponse:
    return form_page(request, svc, pick_lang(lang, request.cookies.get("lang")))


@router.post("/report", response_class=HTMLResponse)
async def report_submit(request: Request, svc: Svc) -> HTMLResponse:
    form = await request.form()
    lang = form_language(form)
    values: dict[str, Any] = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    values["evidence"] = [str(v) for v in form.getlist("evidence")]
    key = values.get("form_key", "")
    try:
        idem = "form-" + signer(svc.settings.session_secret).loads(key, max_age=FORM_MAX_AGE)
    except BadSignature:
        return form_page(request, svc, lang, values=values, banner=t("err.expired", lang), status=400)
    again = functools.partial(form_page, request, svc, lang, values=values)
    try:
        report = ReportIn(**report_fields(values, lang))
    except ValidationError as e:
        return again(errors=form_errors(e, lang), key=key, banner=t("err.form", lang), status=422)
    if report.service not in svc.policy().services:
        return again(errors={"service": t("err.service", lang)}, key=key, banner=t("err.form", lang), status=422)
    try:
        row, _, _ = await svc.store.submit(report, idem)
    except KeyReused:
        # This form was already sent with other details: nothing stored now; a fresh form
        # (a new key) with what the person typed, to send as a report of its own if they mean it.
        return again(banner=t("err.reused", lang), status=422)
    except ReportRefused:
        return again(banner=t("err.form", lang), status=422)
    except (OutcomeUnknown, Overloaded):
        # Same form, same key: submitting again cannot create a second report.
        return again(key=key, banner=t("err.busy", lang), status=503)
    return page(request, "report_receipt.html", lang, 201, receipt=row["receipt"], contact=report.contact)


@router.get("/status", response_class=HTMLResponse)
async def status_form(request: Request, lang: str | None = None) -> HTMLResponse:
    return page(request, "report_status.html", lang=pick_lang(lang, request.cookies.get("lang")),
                values={}, found=None, looked=False)


@router.post("/status", response_class=HTMLResponse)
async def status_lookup(request: Request, svc: Svc) -> HTMLResponse:
    # A POST, so a contact never ends up in a URL, a browser history or an access log.
    form = await request.form()
    lang = form_language(form)
    receipt = str(form.get("receipt", "")).strip().upper()[:20]
    contact = str(form.get("contact", "")).strip()[:200]
    values = {"receipt": receipt, "contact": contact}
    try:
        found = await svc.store.lookup(receipt, contact) if receipt and contact else None
    except AnswerUnknown:
        # Unknown is not "no such report": told that, a person files the report again.
        return page(request, "report_status.html", lang, 503, values=values, found=None, looked=False, unknown=True)
    return page(request, "report_status.html", lang, 200 if found else 404, values=values, found=found, looked=True)


@router.get("/report")
async def report_get(lang: str | None = None) -> RedirectResponse:
    return RedirectResponse("/" + (f"?lang={lang}" if lang in LANGS else ""), status_code=303)
