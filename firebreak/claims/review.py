"""The reviewer console, `/review`: sign in, queues by flag and reporter kind, a report's
verification and decision, bulk approval of clean reports, the audit log and the payout export.

Every state-changing request needs a signed-in reviewer whose role allows the action, a CSRF
token bound to the session, and leaves a row in review_audit, refusals included.
"""

from __future__ import annotations

import asyncio

import csv
import io
import json
import logging
import secrets
import time
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from firebreak.claims.ledger import Outage
from firebreak.claims.models import REPORTER_KINDS
from firebreak.claims.policy import Policy
from firebreak.claims.reviewers import NEEDS, Reviewer, may, verify_password_async
from firebreak.claims.verify import FLAGS, assess

log = logging.getLogger("firebreak.review")
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
QUEUES = ("all", "clean", "needs-review") + FLAGS
DECISIONS = {"approve": "approved", "reject": "rejected", "escalate": "escalated", "note": None}
# A catching-up pass: small enough that intake resuming waits for at most one short pass (5,000
# reports took seconds of the app's and PostgreSQL's CPU, which the first reports of a burst
# after a quiet second paid for), with 0.05 s between passes.
VERIFY_BATCH = 500
EXPORT_COLUMNS = ("receipt", "reporter_kind", "service", "contact", "amount", "currency", "goodwill", "rule",
                  "decided_by", "decided_at")
QUEUE_SQL = {
    "all": "TRUE",
    "clean": "flags = '{}' AND NOT needs_review AND rule IS NOT NULL",
    "needs-review": "needs_review",
    **{f: f"'{f}' = ANY(flags)" for f in FLAGS},
}


async def verify_pending(conn: Any, policy: Policy, outages: list[Outage], limit: int = VERIFY_BATCH) -> int:
    """Price and flag reports nobody has verified yet (at most `limit`); returns how many."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT r.id, r.reporter_kind, r.service, r.window_start, r.window_end, r.claimed_amount, r.plan_price, "
        "r.evidence, EXISTS (SELECT 1 FROM reports o WHERE o.contact = r.contact AND o.service = r.service "
        "AND o.window_start = r.window_start AND o.window_end = r.window_end AND o.id < r.id) AS duplicate "
        "FROM reports r WHERE r.status = 'received' ORDER BY r.id LIMIT %s FOR UPDATE SKIP LOCKED", (limit,))
    rows = await cur.fetchall()
    updates = []
    for r in rows:
        a = assess(policy, outages, reporter_kind=r["reporter_kind"], service=r["service"], start=r["window_start"],
                   end=r["window_end"], claimed_amount=r["claimed_amount"], plan_price=r["plan_price"],
                   evidence=tuple(r["evidence"]), duplicate=r["duplicate"])
        updates.append((a.hours, a.rule, a.amount, a.goodwill, a.review, list(a.flags), list(a.reasons), r["id"]))
    if updates:
        await cur.executemany(
            "UPDATE reports SET status = 'verified', verified_hours = %s, rule = %s, amount = %s, goodwill = %s, "
            "needs_review = %s, flags = %s, reasons = %s WHERE id = %s", updates)
    return len(updates)


# A cell a spreadsheet would read as a formula (OWASP's list): `=HYPERLINK(...)` in a contact
# field, or a real phone number `+82 ...`, which Excel turns into a formula or a number.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """Text that starts like a formula gets a leading apostrophe, which spreadsheets show as text
    and do not evaluate; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def export_csv(rows: list[dict], currency: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_COLUMNS)
    for r in rows:
        w.writerow([spreadsheet_safe(v) for v in (
            r["receipt"], r["reporter_kind"], r["service"], r["contact"], r["amount"] or 0, currency,
            r["goodwill"] or "", r["rule"] or "", r["decided_by"],
            r["decided_at"].isoformat() if r["decided_at"] else "")])
    return buf.getvalue()


APPROVED_SQL = ("SELECT receipt, reporter_kind, service, contact, amount, goodwill, rule, decided_by, decided_at "
                "FROM reports WHERE status = 'approved' ORDER BY decided_at, id")


class AnonymousTally:
    """Anonymous refusals, counted per action and source: the first is summarised at once, then
    at most one summary a minute, whatever the rate."""

    MAX_SOURCES = 1_000  # a count, not a list: distinct sources beyond this are not told apart

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.counts: dict[str, int] = {}
        self.sources: set[str] = set()
        self.since: float | None = None
        self.flushed = float("-inf")

    def note(self, action: str, source: str, now: float) -> dict | None:
        if self.since is None:
            self.since = now
        self.counts[action] = self.counts.get(action, 0) + 1
        if len(self.sources) < self.MAX_SOURCES:
            self.sources.add(source)
        if now - self.flushed < self.every:
            return None
        summary = {"count": sum(self.counts.values()), "actions": dict(sorted(self.counts.items())),
                   "sources": len(self.sources), "seconds": round(now - self.since, 1)}
        self.counts, self.sources, self.since, self.flushed = {}, set(), None, now
        return summary


VERIFY_EVERY = 2.0  # seconds between passes of the verifier over newly received reports
VERIFY_QUIET = 1.0  # intake idle this long: the verifier catches up at full speed
VERIFY_BUSY_BATCH = 50


def verify_batch(now: float, last_submit: float) -> int:
    """How many reports the next pass verifies. While reports are arriving (a flood, after an
    outage), verifying them competes with taking them: every verification is a second write of
    the report (a synchronous commit) and Python work in the app that answers the intake. So it
    takes a small share (VERIFY_BUSY_BATCH per pass, 25 a second per site) and catches up once
    intake has been quiet for VERIFY_QUIET; a reviewer sees a report as received meanwhile."""
    return VERIFY_BATCH if now - last_submit >= VERIFY_QUIET else VERIFY_BUSY_BATCH


def register_review(app: FastAPI, store: Any, settings: Any, policy_source: Any, outage_source: Any,
                    limiter: Any, source_of: Any) -> Callable[[str, str], Awaitable[None]]:
    """The reviewer console's routes on `app`; returns what counts an anonymous refusal
    (action, source), for the edge that refuses some before they reach a route."""

    async def who(request: Request) -> Reviewer | None:
        """The signed-in reviewer with the role the database gives them now: a reviewer removed or
        demoted since signing in is removed or demoted on their next request, not 8 hours later."""
        u = request.session.get("reviewer")
        if not u:
            return None
        row = await store.read_one("SELECT name, role FROM reviewers WHERE name = %s", (u["name"],))
        if row is None:
            request.session.clear()
            return None
        return Reviewer(row["name"], row["role"])

    def csrf_token(request: Request) -> str:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        return request.session["csrf"]

    anonymous = AnonymousTally(settings.anonymous_audit_every)

    async def verifier() -> None:
        """Prices and flags new reports in the background: opening the queue (a GET) writes nothing.
        Every site's app runs one; SKIP LOCKED keeps them off each other's rows."""
        while True:
            n, size = 0, verify_batch(time.monotonic(), store.last_submit)
            try:
                policy = policy_source()
                outages, _ = await outage_source()
                async with store.primary.connection(timeout=5) as conn:
                    n = await verify_pending(conn, policy, outages, size)
            except Exception as e:  # noqa: BLE001 - no primary now, say: try again next pass
                log.warning("verifying new reports failed (will retry): %s", e)
            await asyncio.sleep(0.05 if n >= VERIFY_BATCH else VERIFY_EVERY)

    app.state.background.append(verifier)

    async def anonymous_refused(action: str, source: str) -> None:
        """Anonymous refusals are counted and written as one row a minute, not one synchronous
        row per request: a flood must not grow the database or hold intake's connections."""
        summary = anonymous.note(action, source, time.monotonic())
        if summary is not None:
            log.warning("refused %d anonymous review requests in the last minute: %s", summary["count"],
                        summary["actions"])
            await write_audit(source, "anonymous", "refused", "denied: not signed in", [], summary)

    async def refuse_anonymous(request: Request, action: str) -> None:
        await anonymous_refused(action, source_of(request))

    async def audit(request: Request, actor: str, action: str, outcome: str, ids: list[int] | None = None,
                    **detail: Any) -> None:
        await write_audit(source_of(request), actor, action, outcome, ids or [], detail)

    async def write_audit(client: str, actor: str, action: str, outcome: str, ids: list[int], detail: dict) -> None:
        try:
            async with store.primary.connection(timeout=5) as conn:
                await conn.execute(
                    "INSERT INTO review_audit (who, action, report_ids, detail, client, site, outcome) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (actor, action, ids, Jsonb(detail), client, settings.site, outcome))
        except Exception as e:  # noqa: BLE001 - the refusal stands even if its record fails
            log.error("could not write the review audit log: %s", e)

    async def guard(request: Request, action: str, form: Any) -> Reviewer | Response:
        """The signed-in reviewer allowed to do `action`, or the refusal to send."""
        r = await who(request)
        sent = str(form.get("csrf", "")) if form is not None else request.headers.get("x-csrf-token", "")
        if r is None:
            await refuse_anonymous(request, action)
            return JSONResponse({"error": "sign in at /review/login first"}, status_code=401)
        if not secrets.compare_digest(sent, request.session.get("csrf", "") or "-"):
            await audit(request, r.name, action, "denied: bad or missing CSRF token")
            return JSONResponse({"error": "the form's security token is missing or stale; reload the page"},
                                status_code=403)
        if not may(r.role, action):
            await audit(request, r.name, action, f"denied: role {r.role} may not {action}")
            return JSONResponse({"error": f"role {r.role} may not {action}; it needs {NEEDS[action]} or above"},
                                status_code=403)
        return r

    def page(request: Request, name: str, code: int = 200, me: Reviewer | None = None, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"me": me, "csrf": csrf_token(request),
                                                          "site": settings.site, **ctx}, status_code=code)

    @app.get("/review/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request) -> HTMLResponse:
        return page(request, "review_login.html", error=None)

    @app.post("/review/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:256]
        if not secrets.compare_digest(str(form.get("csrf", "")), request.session.get("csrf", "") or "-"):
            return page(request, "review_login.html", 403, error="The sign-in form expired; please try again.")
        if not limiter.allow("login:" + source_of(request), time.monotonic()):
            await refuse_anonymous(request, "login (throttled)")
            return page(request, "review_login.html", 429, error="Too many attempts; wait a minute.")
        async with store.primary.connection(timeout=5) as conn:
            row = await (await conn.execute("SELECT role, password_hash FROM reviewers WHERE name = %s",
                                            (name,))).fetchone()
        if not await verify_password_async(row[1] if row else None, password):
            await refuse_anonymous(request, "login (wrong name or password)")
            return page(request, "review_login.html", 401, error="Wrong name or password.")
        request.session.clear()  # a new session on sign-in: no fixation
        # Only the name: the role is read from the database on every request (who()).
        request.session.update(reviewer={"name": name}, csrf=secrets.token_urlsafe(24))
        await audit(request, name, "login", "ok")
        return RedirectResponse("/review", status_code=303)

    @app.post("/review/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        form = await request.form()
        r = await guard(request, "note", form)
        if isinstance(r, Reviewer):
            await audit(request, r.name, "logout", "ok")
            request.session.clear()
        return RedirectResponse("/review/login", status_code=303)

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    async def queue(request: Request, queue: str = "all", kind: str = "", status: str = "verified") -> Response:
        me = await who(request)
        if me is None:
            return RedirectResponse("/review/login", status_code=303)
        queue = queue if queue in QUEUES else "all"
        kind = kind if kind in REPORTER_KINDS else ""
        status = status if status in ("verified", "escalated", "approved", "rejected") else "verified"
        policy = policy_source()
        outages, ledger_note = await outage_source()
        async with store.primary.connection(timeout=10) as conn:
            cur = conn.cursor(row_factory=dict_row)
            where = "status = %(status)s AND (%(kind)s = '' OR reporter_kind = %(kind)s)"
            await cur.execute(f"SELECT id, receipt, reporter_kind, service, claimed_amount, amount, goodwill, rule, "
                              f"flags, needs_review, verified_hours, created_at FROM reports WHERE {where} AND "
                              f"{QUEUE_SQL[queue]} ORDER BY id LIMIT 200", {"status": status, "kind": kind})
            rows = await cur.fetchall()
            counts_sql = ", ".join(f"count(*) FILTER (WHERE {cond}) AS \"{q}\"" for q, cond in QUEUE_SQL.items())
            await cur.execute(f"SELECT {counts_sql} FROM reports WHERE {where}", {"status": status, "kind": kind})
            counts = await cur.fetchone()
            await cur.execute("SELECT count(*) AS n FROM reports WHERE status = 'received'")
            waiting = (await cur.fetchone())["n"]
        return page(request, "review_queue.html", me=me, rows=rows, counts=counts, queue=queue, kind=kind,
                    status=status, queues=QUEUES, kinds=REPORTER_KINDS, waiting=waiting, ledger_note=ledger_note,
                    policy=policy, can_approve=may(me.role, "approve"))

    @app.get("/review/reports/{report_id}", response_class=HTMLResponse, include_in_schema=False)
    async def report(request: Request, report_id: int) -> Response:
        me = await who(request)
        if me is None:
            return RedirectResponse("/review/login", status_code=303)
        async with store.primary.connection(timeout=5) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM reports WHERE id = %s", (report_id,))
            row = await cur.fetchone()
            await cur.execute("SELECT at, who, action, detail, outcome FROM review_audit WHERE %s = ANY(report_ids) "
                              "ORDER BY id DESC LIMIT 50", (report_id,))
            history = await cur.fetchall()
        if row is None:
            return page(request, "review_report.html", 404, me=me, row=None, history=[], policy=policy_source())
        return page(request, "review_report.html", me=me, row=row, history=history, policy=policy_source())

    @app.post("/review/reports/{report_id}/decide", include_in_schema=False)
    async def decide(request: Request, report_id: int) -> Response:
        form = await request.form()
        action = str(form.get("action", ""))
        if action not in DECISIONS:
            return JSONResponse({"error": f"action must be one of {', '.join(DECISIONS)}"}, status_code=422)
        r = await guard(request, action, form)
        if not isinstance(r, Reviewer):
            return r
        note = str(form.get("note", "")).strip()[:2000]
        amount_raw = str(form.get("amount", "")).replace(",", "").strip()
        if amount_raw and (not amount_raw.isdigit() or int(amount_raw) > 10_000_000_000):
            return JSONResponse({"error": "amount must be a whole number of won"}, status_code=422)
        new_status = DECISIONS[action]
        async with store.primary.connection(timeout=5) as conn:
            if new_status is None:
                res = await conn.execute("UPDATE reports SET note = note || %s WHERE id = %s RETURNING id",
                                         (f"[{r.name}] {note}\n", report_id))
            else:
                res = await conn.execute(
                    "UPDATE reports SET status = %s, decided_by = %s, decided_at = now(), "
                    "amount = COALESCE(%s, amount), note = note || %s "
                    "WHERE id = %s AND status IN ('verified', 'escalated') RETURNING id",
                    (new_status, r.name, int(amount_raw) if amount_raw and action == "approve" else None,
                     f"[{r.name}] {note}\n" if note else "", report_id))
            done = await res.fetchone()
        if done is None:
            await audit(request, r.name, action, "refused: no such report awaiting a decision", [report_id])
            return JSONResponse({"error": f"report {report_id} does not exist or was already decided"},
                                status_code=409)
        await audit(request, r.name, action, "ok", [report_id], note=note, amount=amount_raw or None)
        return RedirectResponse(f"/review/reports/{report_id}", status_code=303)

    @app.post("/review/bulk-approve", include_in_schema=False)
    async def bulk_approve(request: Request) -> Response:
        form = await request.form()
        r = await guard(request, "bulk-approve", form)
        if not isinstance(r, Reviewer):
            return r
        kind = str(form.get("kind", ""))
        kind = kind if kind in REPORTER_KINDS else ""
        async with store.primary.connection(timeout=10) as conn:
            res = await conn.execute(
                f"UPDATE reports SET status = 'approved', decided_by = %(who)s, decided_at = now() "
                f"WHERE status = 'verified' AND (%(kind)s = '' OR reporter_kind = %(kind)s) AND {QUEUE_SQL['clean']} "
                f"RETURNING id", {"who": r.name, "kind": kind})
            ids = [row[0] for row in await res.fetchall()]
        await audit(request, r.name, "bulk-approve", "ok", ids, kind=kind or "all", count=len(ids))
        return RedirectResponse(f"/review?queue=clean&kind={kind}", status_code=303)

    @app.get("/review/export.csv", include_in_schema=False)
    async def export(request: Request) -> Response:
        # A GET that changes nothing but hands out contacts and money: approvers only, audited.
        r = await who(request)
        if r is None:
            await refuse_anonymous(request, "export")
        elif not may(r.role, "export"):
            await audit(request, r.name, "export", "denied")
        if r is None or not may(r.role, "export"):
            return JSONResponse({"error": "exporting payouts needs a signed-in approver"},
                                status_code=401 if r is None else 403)
        async with store.primary.connection(timeout=10) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(APPROVED_SQL)
            rows = await cur.fetchall()
        await audit(request, r.name, "export", "ok", count=len(rows))
        return Response(export_csv(rows, policy_source().currency), media_type="text/csv",
                        headers={"Content-Disposition": "attachment; filename=payouts.csv"})

    @app.get("/review/audit", include_in_schema=False)
    async def audit_log(request: Request) -> Response:
        me = await who(request)
        if me is None:
            return RedirectResponse("/review/login", status_code=303)
        async with store.primary.connection(timeout=5) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT at, who, action, report_ids, detail, client, site, outcome FROM review_audit "
                              "ORDER BY id DESC LIMIT 200")
            rows = await cur.fetchall()
        return page(request, "review_audit.html", me=me, rows=rows, dumps=json.dumps)

    return anonymous_refused
