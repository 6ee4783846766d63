"""The ops console and API served by every site's agent: the state of every site, the primary,
routing, incidents, the outage ledger and the audit log, and the actions operators need,
working from whichever sites survive. State changes need an authenticated operator (token
as Bearer, or a login session with a CSRF token); every authenticated attempt is audited in etcd.
The console reads etcd as its agent's own etcd user, and makes the writes operators ask for (and
the audit log's) as the operators' user, `etcd_ops_access`: the agent's user may not make them.

This module assembles the console from its routers, one per concern:

| module | routes |
|---|---|
| console_status.py | `/healthz`, `/api/status`, `/api/estate`, `/api/routing`, `/api/ledger`, `/api/audit`, |
| | `/metrics` |
| console_actions.py | `POST /api/actions/{action}`, `POST /actions/{action}` (the page's forms) |
| console_auth.py | `POST /login`, `POST /logout`, `GET /` (the page) |

What they share (etcd clients, the operator check, the audit writer, the throttle of failed
attempts) is console_deps.Console, handed to each route by the `ConsoleDep` dependency. Every
field and body is capped; the actions themselves live in actions.py, one function each."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.sessions import SessionMiddleware

from firebreak.control import console_actions, console_auth, console_status
from firebreak.control.agent import Agent
from firebreak.control.console_deps import Console
from firebreak.control.etcd import EtcdError


def create_console(agent: Agent) -> FastAPI:
    console = Console.open(agent)
    site = agent.cfg.site

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            yield
        finally:
            await console.close()

    app = FastAPI(title=f"Firebreak ops console ({site})", version="1", lifespan=lifespan)
    app.state.console = console
    # Sessions are per console: a restart only asks people to log in again.
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict",
                       https_only=False, session_cookie=f"firebreak_{site}")
    for module in (console_status, console_actions, console_auth):
        app.include_router(module.router)

    @app.exception_handler(EtcdError)
    async def _etcd_down(request: Request, exc: EtcdError) -> JSONResponse:
        return JSONResponse({"error": f"etcd unavailable from {site}: {exc}"}, status_code=503)

    return app
