"""The public portal: the report form (Korean by default, English), the receipt, and the
status page. Server-rendered, so it works on any phone without JavaScript; a small script
adds validation as you type with the same messages the server gives.

A form carries a signed key made when it was shown. The key is the report's idempotency key:
a person who taps "submit" again after a site was lost mid-request (or whose first tap timed
out) gets the same receipt, never a second report.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import ValidationError

from firebreak.claims.i18n import EVIDENCE, LANGS, T, pick_lang, t
from firebreak.claims.models import REPORTER_KINDS, ReportIn
from firebreak.errors import AnswerUnknown

KST = timezone(timedelta(hours=9))  # Korea has no daylight saving time
FORM_MAX_AGE = 24 * 3600
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# Which message a server-side error on a field gets, in the person's language.
FIELD_MESSAGE = {"claimed_amount": "err.amount", "plan_price": "err.amount", "contact": "err.contact",
                 "window_end": "err.window"}


def parse_local(value: str) -> datetime | str:
    """A datetime-local value ('2022-10-15T15:20') read as Korea time; bad input passes through
    for the model to refuse with a field error."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    return dt if dt.tzinfo else dt.replace(tzinfo=KST)


def form_errors(exc: ValidationError, lang: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        name = loc[0] if loc else "form"
        if e["type"] == "missing" or (e["type"] == "string_too_short" and name != "contact"):
            errors.setdefault(name, t("required", lang))
        elif name in FIELD_MESSAGE:
            errors.setdefault(name, t(FIELD_MESSAGE[name], lang))
        elif not loc or e["type"] == "value_error":
            errors.setdefault("window_end", t("err.window", lang))
        else:
            errors.setdefault(name, e["msg"])
    return errors


def register_portal(app: FastAPI, store: Any, settings: Any, policy_source: Any) -> None:
    signer = URLSafeTimedSerializer(settings.session_secret, salt="firebreak-report-form")

    def page(request: Request, name: str, lang: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        r = templates.TemplateResponse(request, name, {"lang": lang, "T": {k: v[lang] for k, v in T.items()},
                                                       "other": "en" if lang == "ko" else "ko", **ctx},
                                       status_code=status)
        r.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", httponly=True)
        return r

    def form_page(request: Request, lang: str, *, values: dict | None = None, errors: dict | None = None,
                  key: str | None = None, banner: str | None = None, status: int = 200) -> HTMLResponse:
        return page(request, "report_form.html", lang, status, kinds=REPORTER_KINDS, services=policy_source().services,
                    evidence=EVIDENCE, values=values or {}, errors=errors or {}, banner=banner,
                    form_key=key or signer.dumps(uuid.uuid4().hex))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def report_form(request: Request, lang: str | None = None) -> HTMLResponse:
        return form_page(request, pick_lang(lang, request.cookies.get("lang")))

    @app.post("/report", response_class=HTMLResponse, include_in_schema=False)
    async def report_submit(request: Request) -> HTMLResponse:
        form = await request.form()
        lang = form.get("language") if form.get("language") in LANGS else "ko"
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        values["evidence"] = [str(v) for v in form.getlist("evidence")]
        key = values.get("form_key", "")
        try:
            idem = "form-" + signer.loads(key, max_age=FORM_MAX_AGE)
        except BadSignature:
            return form_page(request, lang, values=values, banner=t("err.expired", lang), status=400)
        data: dict[str, Any] = {k: values.get(k, "") for k in ("reporter_kind", "service", "description", "contact")}
        data.update(window_start=parse_local(values.get("window_start", "")),
                    window_end=parse_local(values.get("window_end", "")),
                    claimed_amount=values.get("claimed_amount", "").replace(",", "") or None,
                    plan_price=values.get("plan_price", "").replace(",", "") or 0,
                    evidence=values["evidence"], language=lang)
        try:
            report = ReportIn(**data)
        except ValidationError as e:
            return form_page(request, lang, values=values, errors=form_errors(e, lang), key=key,
                             banner=t("err.form", lang), status=422)
        if report.service not in policy_source().services:
            return form_page(request, lang, values=values, errors={"service": t("err.service", lang)}, key=key,
                             banner=t("err.form", lang), status=422)
        from firebreak.errors import KeyReused, OutcomeUnknown, Overloaded, ReportRefused
        try:
            row, _, _ = await store.submit(report, idem)
        except KeyReused:
            # This form was already sent with other details: nothing stored now; a fresh form
            # (a new key) with what the person typed, to send as a report of its own if they mean it.
            return form_page(request, lang, values=values, banner=t("err.reused", lang), status=422)
        except ReportRefused:
            return form_page(request, lang, values=values, banner=t("err.form", lang), status=422)
        except (OutcomeUnknown, Overloaded):
            # Same form, same key: submitting again cannot create a second report.
            return form_page(request, lang, values=values, key=key, banner=t("err.busy", lang), status=503)
        return page(request, "report_receipt.html", lang, 201, receipt=row["receipt"], contact=report.contact)

    @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
    async def status_form(request: Request, lang: str | None = None) -> HTMLResponse:
        return page(request, "report_status.html", lang=pick_lang(lang, request.cookies.get("lang")),
                    values={}, found=None, looked=False)

    @app.post("/status", response_class=HTMLResponse, include_in_schema=False)
    async def status_lookup(request: Request) -> HTMLResponse:
        # A POST, so a contact never ends up in a URL, a browser history or an access log.
        form = await request.form()
        lang = form.get("language") if form.get("language") in LANGS else "ko"
        receipt = str(form.get("receipt", "")).strip().upper()[:20]
        contact = str(form.get("contact", "")).strip()[:200]
        try:
            found = await store.lookup(receipt, contact) if receipt and contact else None
        except AnswerUnknown:
            # Unknown is not "no such report": told that, a person files the report again.
            return page(request, "report_status.html", lang, 503, values={"receipt": receipt, "contact": contact},
                        found=None, looked=False, unknown=True)
        return page(request, "report_status.html", lang, 200 if found else 404,
                    values={"receipt": receipt, "contact": contact}, found=found, looked=True)

    @app.get("/report", include_in_schema=False)
    async def report_get(lang: str | None = None) -> RedirectResponse:
        return RedirectResponse("/" + (f"?lang={lang}" if lang in LANGS else ""), status_code=303)
