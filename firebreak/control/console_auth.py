"""The console's sign-in and the page it serves: `POST /login` (an operator's name and token;
a session with a fresh CSRF token), `POST /logout` (needs that CSRF token), and `GET /`, the
page of the status, the newest ledger and audit entries, and the forms for the actions."""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from firebreak.control import auth
from firebreak.control.console_deps import Console, ConsoleDep
from firebreak.control.console_status import page_of, status_doc
from firebreak.control.etcd import EtcdError

_env = Environment(loader=PackageLoader("firebreak.control", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)

router = APIRouter()


@router.post("/login", response_model=None)
async def login(c: ConsoleDep, request: Request, name: str = Form(..., max_length=32),
                token: str = Form(..., max_length=auth.MAX_TOKEN)) -> RedirectResponse | JSONResponse:
    if (limited := c.throttled(request)) is not None:
        return limited
    who = await auth.authenticate(c.etcd, c.keys, f"{name}.{token}" if "." not in token else token)
    if who is None:
        c.failed_attempt(request, "login")
        request.session["flash"] = "login failed: unknown operator or wrong token"
    else:
        request.session.clear()
        request.session["operator"] = {"name": who.name}
        request.session["csrf"] = secrets.token_urlsafe(24)
        await c.audit(who.name, "login", {}, request, "ok")
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> RedirectResponse:
    if secrets.compare_digest(csrf, request.session.get("csrf", "") or "-"):
        request.session.clear()
    return RedirectResponse("/", status_code=303)


@router.get("/", response_class=HTMLResponse)
async def page(c: ConsoleDep, request: Request) -> HTMLResponse:
    try:
        doc = await status_doc(c)
        ledger_rows = list(reversed(await page_of(c, c.keys.ledger, 20, None)))
        audit_rows = list(reversed(await page_of(c, c.keys.audit, 15, None)))
    except EtcdError as e:
        doc, ledger_rows, audit_rows = {"site": c.site, "error": str(e), "sites": {}, "routing": {}}, [], []
    user = await _signed_in(c, request)
    flash = request.session.pop("flash", None)
    return HTMLResponse(_env.get_template("console.html").render(
        s=doc, user=user, csrf=request.session.get("csrf"), ledger=ledger_rows, audit=audit_rows,
        sites=list(c.cfg.sites), flash=flash, now=time.time()))


async def _signed_in(c: Console, request: Request) -> dict | None:
    """The session's operator with the role etcd gives them now, as for every action: a removed
    operator is signed out. A session without a CSRF token gets one."""
    user = request.session.get("operator")
    if not user:
        return None
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(24)
    try:
        kv = await c.etcd.get(c.keys.operator(user["name"]))
    except EtcdError:
        kv = None
    if kv is None:
        request.session.clear()
        return None
    return {"name": user["name"], "role": kv.json().get("role", "viewer")}
