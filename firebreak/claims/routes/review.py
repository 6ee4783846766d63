"""The reviewer console, `/review`: sign in, queues by flag and reporter kind, a report's
verification and decision, bulk approval of clean reports, the audit log and the payout export.

Every state-changing request needs a signed-in reviewer whose role allows the action, a CSRF
token bound to the session, and leaves a row in review_audit, refusals included.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from firebreak.claims.models import REPORTER_KINDS
from firebreak.claims.review import DECISIONS, QUEUES, bulk_approval, export_csv
from firebreak.claims.reviewers import NEEDS, Reviewer, may, verify_password_async
from firebreak.claims.routes.deps import Refused, Services, Svc

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
STATUSES = ("verified", "escalated", "approved", "rejected")


async def signed_in(request: Request, svc: Svc) -> Reviewer | None:
    """The signed-in reviewer with the role the database gives them now: a reviewer removed or
    demoted since signing in is removed or demoted on their next request, not 8 hours later."""
    u = request.session.get("reviewer")
    if not u:
        return None
    role = await svc.reviews.role_of(u["name"])
    if role is None:
        request.session.clear()
        return None
    return Reviewer(u["name"], role)


Me = Annotated[Reviewer | None, Depends(signed_in)]


def csrf_token(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(24)
    return request.session["csrf"]


def page(request: Request, svc: Services, name: str, code: int = 200, me: Reviewer | None = None,
         **ctx: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"me": me, "csrf": csrf_token(request),
                                                      "site": svc.settings.site, **ctx}, status_code=code)


async def audit(request: Request, svc: Services, actor: str, action: str, outcome: str,
                ids: list[int] | None = None, **detail: Any) -> None:
    await svc.audit(svc.source(request), actor, action, outcome, ids or [], detail)


async def allowed(request: Request, svc: Services, me: Reviewer | None, action: str, sent_csrf: str) -> Reviewer:
    """The signed-in reviewer allowed to do `action`; otherwise the refusal is audited and raised."""
    if me is None:
        await svc.refused_anonymous(action, svc.source(request))
        raise Refused(401, "sign in at /review/login first")
    if not secrets.compare_digest(sent_csrf.encode(), (request.session.get("csrf", "") or "-").encode()):
        await audit(request, svc, me.name, action, "denied: bad or missing CSRF token")
        raise Refused(403, "the form's security token is missing or stale; reload the page")
    if not may(me.role, action):
        await audit(request, svc, me.name, action, f"denied: role {me.role} may not {action}")
        raise Refused(403, f"role {me.role} may not {action}; it needs {NEEDS[action]} or above")
    return me


@router.get("/review/login", response_class=HTMLResponse)
async def login_form(request: Request, svc: Svc) -> HTMLResponse:
    return page(request, svc, "review_login.html", error=None)


@router.post("/review/login")
async def login(request: Request, svc: Svc) -> Response:
    form = await request.form()
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:256]
    if not secrets.compare_digest(str(form.get("csrf", "")).encode(), (request.session.get("csrf", "") or "-").encode()):
        return page(request, svc, "review_login.html", 403, error="The sign-in form expired; please try again.")
    source = svc.source(request)
    if not svc.login_limit.allow("login:" + source, svc.clock.monotonic()):
        await svc.refused_anonymous("login (throttled)", source)
        return page(request, svc, "review_login.html", 429, error="Too many attempts; wait a minute.")
    found = await svc.reviews.credentials(name)
    if not await verify_password_async(found[1] if found else None, password):
        await svc.refused_anonymous("login (wrong name or password)", source)
        return page(request, svc, "review_login.html", 401, error="Wrong name or password.")
    request.session.clear()  # a new session on sign-in: no fixation
    # Only the name: the role is read from the database on every request (signed_in()).
    request.session.update(reviewer={"name": name}, csrf=secrets.token_urlsafe(24))
    await audit(request, svc, name, "login", "ok")
    return RedirectResponse("/review", status_code=303)


@router.post("/review/logout")
async def logout(request: Request, svc: Svc, me: Me) -> Response:
    form = await request.form()
    try:
        r = await allowed(request, svc, me, "note", str(form.get("csrf", "")))
    except Refused:
        return RedirectResponse("/review/login", status_code=303)
    await audit(request, svc, r.name, "logout", "ok")
    request.session.clear()
    return RedirectResponse("/review/login", status_code=303)


@router.get("/review", response_class=HTMLResponse)
async def queue(request: Request, svc: Svc, me: Me, queue: str = "all", kind: str = "",
                status: str = "verified") -> Response:
    if me is None:
        return RedirectResponse("/review/login", status_code=303)
    queue = queue if queue in QUEUES else "all"
    kind = kind if kind in REPORTER_KINDS else ""
    status = status if status in STATUSES else "verified"
    policy = svc.policy()
    _, ledger_note = await svc.outages()
    q = await svc.reviews.queue(status, kind, queue)
    can_approve = may(me.role, "approve")
    clean = await svc.reviews.clean_set(kind) if can_approve and status == "verified" else None
    return page(request, svc, "review_queue.html", me=me, rows=q.rows, counts=q.counts, queue=queue, kind=kind,
                status=status, queues=QUEUES, kinds=REPORTER_KINDS, waiting=q.waiting, ledger_note=ledger_note,
                policy=policy, can_approve=can_approve, clean=clean,
                confirm_over=getattr(policy, "approve_all_confirm_over", None))


@router.get("/review/reports/{report_id}", response_class=HTMLResponse)
async def report(request: Request, svc: Svc, me: Me, report_id: int) -> Response:
    if me is None:
        return RedirectResponse("/review/login", status_code=303)
    row, history = await svc.reviews.report(report_id)
    return page(request, svc, "review_report.html", 200 if row else 404, me=me, row=row, history=history if row else [],
                policy=svc.policy())


@router.post("/review/reports/{report_id}/decide")
async def decide(request: Request, svc: Svc, me: Me, report_id: int) -> Response:
    form = await request.form()
    action = str(form.get("action", ""))
    if action not in DECISIONS:
        return JSONResponse({"error": f"action must be one of {', '.join(DECISIONS)}"}, status_code=422)
    r = await allowed(request, svc, me, action, str(form.get("csrf", "")))
    note = str(form.get("note", "")).strip()[:2000]
    amount_raw = str(form.get("amount", "")).replace(",", "").strip()
    if amount_raw and (not amount_raw.isdigit() or int(amount_raw) > 10_000_000_000):
        return JSONResponse({"error": "amount must be a whole number of won"}, status_code=422)
    new_status = DECISIONS[action]
    if new_status is None:
        done = await svc.reviews.add_note(report_id, r.name, note)
    else:
        amount = int(amount_raw) if amount_raw and action == "approve" else None
        done = await svc.reviews.decide(report_id, new_status, r.name, amount, note)
    if not done:
        await audit(request, svc, r.name, action, "refused: no such report awaiting a decision", [report_id])
        return JSONResponse({"error": f"report {report_id} does not exist or was already decided"}, status_code=409)
    await audit(request, svc, r.name, action, "ok", [report_id], note=note, amount=amount_raw or None)
    return RedirectResponse(f"/review/reports/{report_id}", status_code=303)


def _whole(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 18 else None


@router.post("/review/bulk-approve")
async def bulk_approve(request: Request, svc: Svc, me: Me) -> Response:
    """Approves every clean report of a kind up to the newest one the reviewer was shown; above
    the policy's `approve_all_confirm_over`, only once they confirmed the very total."""
    form = await request.form()
    r = await allowed(request, svc, me, "bulk-approve", str(form.get("csrf", "")))
    kind = str(form.get("kind", ""))
    kind = kind if kind in REPORTER_KINDS else ""
    over = getattr(svc.policy(), "approve_all_confirm_over", None)
    confirmed = _whole(form.get("confirm_total")) if form.get("confirm") == "yes" else None
    clean, ask, ids = await svc.reviews.approve_clean(
        r.name, kind, _whole(form.get("upto")), lambda c: bulk_approval(c.count, c.total, over, confirmed))
    if not ask.approve:
        await audit(request, svc, r.name, "bulk-approve", "asked to confirm", kind=kind or "all", count=clean.count,
                    total=clean.total, over=over)
        return page(request, svc, "review_confirm.html", me=me, clean=clean, kind=kind, over=over, reason=ask.reason,
                    currency=svc.policy().currency)
    await audit(request, svc, r.name, "bulk-approve", "ok", ids, kind=kind or "all", count=len(ids), total=clean.total)
    return RedirectResponse(f"/review?queue=clean&kind={kind}", status_code=303)


@router.get("/review/export.csv")
async def export(request: Request, svc: Svc, me: Me) -> Response:
    # A GET that changes nothing but hands out contacts and money: approvers only, audited.
    if me is None:
        await svc.refused_anonymous("export", svc.source(request))
        return JSONResponse({"error": "exporting payouts needs a signed-in approver"}, status_code=401)
    if not may(me.role, "export"):
        await audit(request, svc, me.name, "export", "denied")
        return JSONResponse({"error": "exporting payouts needs a signed-in approver"}, status_code=403)
    rows = await svc.reviews.approved()
    await audit(request, svc, me.name, "export", "ok", count=len(rows))
    return Response(export_csv(rows, svc.policy().currency), media_type="text/csv",
                    headers={"Content-Disposition": "attachment; filename=payouts.csv"})


@router.get("/review/audit")
async def audit_log(request: Request, svc: Svc, me: Me) -> Response:
    if me is None:
        return RedirectResponse("/review/login", status_code=303)
    return page(request, svc, "review_audit.html", me=me, rows=await svc.reviews.audit_log(), dumps=json.dumps)
