"""The console's actions: `POST /api/actions/{action}` (JSON, Bearer token or session + CSRF
header) and `POST /actions/{action}` (the page's forms, session + CSRF field). One path for both
(`run_action`): throttle, authenticate, check the action and the role, make sure the action can
be audited, perform it, audit the outcome. The actions themselves live in actions.py."""

from __future__ import annotations

import json

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError

from firebreak.control import auth
from firebreak.control.actions import ACTIONS, ActionIn
from firebreak.control.console_deps import Console, ConsoleDep
from firebreak.control.etcd import EtcdError
from firebreak.errors import Denied, OpsError

router = APIRouter()


async def run_action(c: Console, action: str, body: ActionIn, request: Request,
                     csrf: str | None = None) -> JSONResponse:
    if (limited := c.throttled(request)) is not None:
        return limited
    who = await c.operator_of(request, csrf)
    if who is None:
        c.failed_attempt(request, "unauthenticated")
        return JSONResponse({"ok": False, "action": action,
                             "error": "an operator must log in, or send Authorization: Bearer <token>"},
                            status_code=401)
    detail = body.model_dump(exclude_none=True)
    try:
        if action not in ACTIONS:
            raise Denied(404, f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
        perform, needed = ACTIONS[action]
        if not auth.allowed(who.role, needed):
            raise Denied(403, f"{who.name} is a {who.role}; {action} needs an {needed}")
        # Every action writes at least its audit entry, as the operators' etcd user: without
        # one, none is performed (a switchover nobody could find in the log is worse).
        c.actions.writer()
        try:
            result = await perform(c.actions, body, who)
        finally:
            c.status_reads.forget()  # the next status shows what the action changed
        await c.audit(who.name, action, detail, request, "ok")
        return JSONResponse({"ok": True, "action": action, "site": c.site, **result})
    except Denied as e:
        await c.audit(who.name, action, detail, request, f"denied: {e.message}")
        return JSONResponse({"ok": False, "action": action, "error": e.message}, status_code=e.status)
    except (EtcdError, OpsError) as e:
        await c.audit(who.name, action, detail, request, f"failed: {e}")
        return JSONResponse({"ok": False, "action": action, "error": str(e)}, status_code=503)


@router.post("/api/actions/{action}")
async def action_api(c: ConsoleDep, action: str, body: ActionIn, request: Request) -> JSONResponse:
    return await run_action(c, action, body, request)


@router.post("/actions/{action}")
async def action_form(c: ConsoleDep, action: str, request: Request, csrf: str = Form("", max_length=64),
                      site: str = Form("", max_length=31), to: str = Form("", max_length=64),
                      cluster: str = Form("", max_length=64), version: str = Form("", max_length=64),
                      notes: str = Form("", max_length=2000)) -> RedirectResponse:
    """The page's forms: the outcome is flashed on the page it redirects back to."""
    try:
        body = ActionIn(site=site or None, to=to or None, cluster=cluster or None, version=version or None,
                        notes=notes)
    except ValidationError as e:
        request.session["flash"] = f"{action} refused: " + "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False))
        return RedirectResponse("/", status_code=303)
    r = await run_action(c, action, body, request, csrf=csrf)
    doc = json.loads(r.body)
    request.session["flash"] = (f"{action}: done" if doc.get("ok") else f"{action} refused: {doc.get('error')}")
    return RedirectResponse("/", status_code=303)
