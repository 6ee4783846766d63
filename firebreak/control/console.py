"""The ops console and API served by every site's agent: the state of every site, the primary,
routing, incidents, the outage ledger and the audit log, and the actions operators need,
working from whichever sites survive. State changes need an authenticated operator (token
as Bearer, or a login session with a CSRF token), and every attempt is audited in etcd."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import asdict

import httpx
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.sessions import SessionMiddleware

from firebreak.control import auth, ops
from firebreak.control.agent import Agent
from firebreak.control.etcd import Etcd, EtcdError
from firebreak.errors import Denied

_env = Environment(loader=PackageLoader("firebreak.control", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)

ACTIONS = {"freeze": "operator", "unfreeze": "operator", "switchover": "operator", "evacuate": "operator",
           "restore": "operator", "deploy": "operator", "release": "operator"}


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str | None = Field(default=None, description="evacuate / restore: the site")
    to: str | None = Field(default=None, description="switchover: the site (or member) to move the primary to")
    version: str | None = Field(default=None, max_length=64, description="deploy / release: the version")
    notes: str = Field(default="", max_length=2000)


def create_console(agent: Agent) -> FastAPI:
    cfg = agent.cfg
    app = FastAPI(title=f"Firebreak ops console ({cfg.site})", version="1")
    # Sessions are per console: a restart only asks people to log in again.
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict",
                       https_only=False, session_cookie=f"firebreak_{cfg.site}")
    http = httpx.AsyncClient(timeout=5)
    # Operators' requests may wait out an etcd election (a second or two after the site holding
    # etcd's leader is lost) instead of failing; the agent's own loops keep their fail-fast client.
    etcd = Etcd(cfg.etcd, timeout=0.8, patience=2.0)

    async def audit(who: str, action: str, detail: dict, request: Request, outcome: str) -> None:
        entry = ops.audit_entry(who, action, detail, cfg.site, request.client.host if request.client else None, outcome)
        try:
            await etcd.put(f"{agent.key_audit}{entry['at']:.6f}-{cfg.site}", json.dumps(entry))
        except EtcdError:
            pass  # the action itself needs etcd too and will say so

    async def operator_of(request: Request, csrf: str | None = None) -> auth.Operator | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return await auth.authenticate(etcd, cfg.prefix, header.removeprefix("Bearer ").strip())
        user = request.session.get("operator")
        if user and csrf is not None and secrets.compare_digest(csrf, request.session.get("csrf", "")):
            return auth.Operator(user["name"], user["role"])
        if user and csrf is None and secrets.compare_digest(request.headers.get("x-csrf-token", ""),
                                                            request.session.get("csrf", "") or "-"):
            return auth.Operator(user["name"], user["role"])
        return None

    async def cluster_view() -> dict:
        c = await agent.read_cluster()
        return {"leader": c.leader, "sync_standbys": list(c.sync_standbys),
                "members": {n: {"role": m.role, "state": m.state} for n, m in c.members.items()}}

    async def drained() -> set[str]:
        return {kv.key.rsplit("/", 1)[1] for kv in await agent.etcd.get_prefix(f"{cfg.prefix}/drained/")}

    async def status_doc() -> dict:
        # Status reads use the agent's fail-fast client: a console cut off from etcd says so at
        # once, and a client that knows every console asks the next one.
        st = agent.state
        now = agent.clock()
        try:
            cluster = await cluster_view()
            drain = await drained()
            current = await agent.etcd.get(f"{cfg.prefix}/release/current")
            frozen = await agent.etcd.get(agent.key_frozen) is not None
        except EtcdError as e:
            cluster, drain, current, frozen = {"error": str(e)}, set(), None, st.frozen
        primary = cfg.site_of_member.get(cluster.get("leader")) if cluster.get("leader") else None
        dead = {s for s, v in st.verdicts.items() if v.dead}
        return {
            "site": cfg.site, "coordinator": st.coordinator, "is_coordinator": st.is_coordinator,
            "frozen": frozen, "primary": primary, "cluster": cluster,
            "sites": {s: {"dead": v.dead, "reason": v.reason, "votes": list(v.votes), "drained": s in drain,
                          "components": st.components.get(s, {}),
                          "unreachable_for": round(max(0.0, now - st.last_ok.get(s, now)), 3)}
                      for s, v in st.verdicts.items()},
            "routing": ops.routing(list(cfg.sites), cfg.site, dead, drain,
                                   {s: e.door for s, e in cfg.sites.items()}),
            # The door's upstreams, best first; a dead one among them is skipped by its health checks.
            "door": {"url": cfg.sites[cfg.site].door, "upstreams": agent.door.order if agent.door else None},
            "release": current.json() if current else None,
            "last_decision": st.last_decision, "failovers": st.failovers,
            "incidents": [asdict(i) for i in st.open_incidents.values()],
        }

    async def perform(action: str, body: ActionIn, who: auth.Operator) -> dict:
        verdicts = agent.state.verdicts
        if action == "freeze":
            await etcd.put(agent.key_frozen, json.dumps({"by": who.name, "at": time.time()}))
            return {"frozen": True}
        if action == "unfreeze":
            await etcd.delete(agent.key_frozen)
            return {"frozen": False}
        if action in ("evacuate", "restore"):
            if body.site not in cfg.sites:
                raise Denied(422, f"site: unknown site {body.site!r}; sites are {', '.join(cfg.sites)}")
            if action == "restore":
                await etcd.delete(f"{cfg.prefix}/drained/{body.site}")
                return {"restored": body.site}
            plan = ops.evacuation_plan(await agent.read_cluster(), body.site, cfg.site_of_member, verdicts)
            if not plan.ok:
                raise Denied(409, plan.reason)
            await etcd.put(f"{cfg.prefix}/drained/{body.site}", json.dumps({"by": who.name, "at": time.time()}))
            result: dict = {"drained": body.site, "plan": plan.reason}
            if plan.candidate:
                cluster = await agent.read_cluster()
                result["switchover"] = await ops.patroni_switchover(http, _patroni_urls(), _patroni_auth(),
                                                                    cluster.leader, plan.candidate)
            return result
        if action == "switchover":
            if not body.to:
                raise Denied(422, "to: required (the site to move the primary to)")
            cluster = await agent.read_cluster()
            plan = ops.switchover_plan(cluster, body.to, cfg.site_of_member, verdicts)
            if not plan.ok:
                raise Denied(409, plan.reason)
            return {"switchover": await ops.patroni_switchover(http, _patroni_urls(), _patroni_auth(),
                                                               cluster.leader, plan.candidate)}
        if action == "release":
            if not body.version:
                raise Denied(422, "version: required")
            await etcd.put(f"{cfg.prefix}/releases/{body.version}", ops.release_record(body.version, body.notes))
            return {"stored": body.version}
        if action == "deploy":
            if not body.version:
                raise Denied(422, "version: required")
            kv = await etcd.get(f"{cfg.prefix}/releases/{body.version}")
            if kv is None:
                raise Denied(404, f"version: no release {body.version!r} in the release store; add it first")
            release = kv.json()
            dead = {s for s, v in verdicts.items() if v.dead}

            async def roll(site: str, app_url: str) -> str:
                if site in dead:
                    return "skipped: site is dead"
                try:
                    await ops.push_release(http, app_url, cfg.app_admin_token, release)
                    return "ok"
                except (httpx.ConnectError, httpx.TimeoutException):
                    # Not answering is what a site that just died looks like before the
                    # verdict; it gets the release from the store when it comes back.
                    return "skipped: unreachable"
                except httpx.HTTPError as e:
                    return f"failed: {e!r}"
            # Every site at once: a silent site costs its timeout once, not once per site after it.
            results = await asyncio.gather(*(roll(s, ep.app) for s, ep in cfg.sites.items()))
            rolled = dict(zip(cfg.sites, results))
            await etcd.put(f"{cfg.prefix}/release/current", json.dumps({**release, "rolled": rolled,
                                                                              "by": who.name, "at": time.time()}))
            if any(v.startswith("failed") for v in rolled.values()):
                raise Denied(502, "deploy failed in " + ", ".join(s for s, v in rolled.items() if v.startswith("failed")))
            return {"deployed": body.version, "sites": rolled}
        raise Denied(404, f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")

    def _patroni_urls() -> list[str]:
        own = cfg.sites[cfg.site].patroni
        dead = {s for s, v in agent.state.verdicts.items() if v.dead}
        return [own] + [ep.patroni for s, ep in cfg.sites.items() if s != cfg.site and s not in dead]

    def _patroni_auth() -> tuple[str, str] | None:
        return (cfg.patroni_user, cfg.patroni_password) if cfg.patroni_user else None

    async def run_action(action: str, body: ActionIn, request: Request, csrf: str | None = None) -> JSONResponse:
        who = None
        try:
            who = await operator_of(request, csrf)
            if who is None:
                raise Denied(401, "an operator must log in, or send Authorization: Bearer <token>")
            if action in ACTIONS and not auth.allowed(who.role, ACTIONS[action]):
                raise Denied(403, f"{who.name} is a {who.role}; {action} needs an {ACTIONS[action]}")
            result = await perform(action, body, who)
            await audit(who.name, action, body.model_dump(exclude_none=True), request, "ok")
            return JSONResponse({"ok": True, "action": action, "site": cfg.site, **result})
        except Denied as e:
            await audit(who.name if who else "anonymous", action, body.model_dump(exclude_none=True), request,
                        f"denied: {e.message}")
            return JSONResponse({"ok": False, "action": action, "error": e.message}, status_code=e.status)
        except (EtcdError, RuntimeError) as e:
            await audit(who.name if who else "anonymous", action, body.model_dump(exclude_none=True), request,
                        f"failed: {e}")
            return JSONResponse({"ok": False, "action": action, "error": str(e)}, status_code=503)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive", "site": cfg.site}

    @app.get("/api/status")
    async def status() -> dict:
        return await status_doc()

    @app.get("/api/routing")
    async def routing_api() -> dict:
        return (await status_doc())["routing"]

    @app.get("/api/ledger")
    async def ledger() -> list:
        return [kv.json() for kv in await etcd.get_prefix(agent.key_ledger)]

    @app.get("/api/audit")
    async def audit_log(limit: int = 100) -> list:
        return [kv.json() for kv in await etcd.get_prefix(agent.key_audit)][-max(1, min(limit, 1000)):]

    @app.post("/api/actions/{action}")
    async def action_api(action: str, body: ActionIn, request: Request) -> JSONResponse:
        return await run_action(action, body, request)

    # -- the web page -------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        try:
            doc = await status_doc()
            ledger_rows = [kv.json() for kv in await agent.etcd.get_prefix(agent.key_ledger)][-20:]
            audit_rows = [kv.json() for kv in await agent.etcd.get_prefix(agent.key_audit)][-15:]
        except EtcdError as e:
            doc, ledger_rows, audit_rows = {"site": cfg.site, "error": str(e), "sites": {}, "routing": {}}, [], []
        user = request.session.get("operator")
        if user and "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        flash = request.session.pop("flash", None)
        return HTMLResponse(_env.get_template("console.html").render(
            s=doc, user=user, csrf=request.session.get("csrf"), ledger=ledger_rows, audit=audit_rows,
            sites=list(cfg.sites), flash=flash, now=time.time()))

    @app.post("/login")
    async def login(request: Request, name: str = Form(...), token: str = Form(...)) -> RedirectResponse:
        who = await auth.authenticate(etcd, cfg.prefix, f"{name}.{token}" if "." not in token else token)
        if who is None:
            await audit(name, "login", {}, request, "denied: bad name or token")
            request.session["flash"] = "login failed: unknown operator or wrong token"
        else:
            request.session.clear()
            request.session["operator"] = {"name": who.name, "role": who.role}
            request.session["csrf"] = secrets.token_urlsafe(24)
            await audit(who.name, "login", {}, request, "ok")
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request, csrf: str = Form("")) -> RedirectResponse:
        if secrets.compare_digest(csrf, request.session.get("csrf", "") or "-"):
            request.session.clear()
        return RedirectResponse("/", status_code=303)

    @app.post("/actions/{action}")
    async def action_form(action: str, request: Request, csrf: str = Form(""), site: str = Form(""),
                          to: str = Form(""), version: str = Form(""), notes: str = Form("")) -> RedirectResponse:
        body = ActionIn(site=site or None, to=to or None, version=version or None, notes=notes)
        r = await run_action(action, body, request, csrf=csrf)
        doc = json.loads(r.body)
        request.session["flash"] = (f"{action}: done" if doc.get("ok") else f"{action} refused: {doc.get('error')}")
        return RedirectResponse("/", status_code=303)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        if agent.metrics is None:
            return PlainTextResponse("")
        for s, v in agent.state.verdicts.items():
            agent.metrics.dead.labels(cfg.site, s).set(1 if v.dead else 0)
        agent.metrics.coordinator.labels(cfg.site).set(1 if agent.state.is_coordinator else 0)
        return PlainTextResponse(generate_latest(agent.metrics.registry).decode())

    @app.exception_handler(EtcdError)
    async def _etcd_down(request: Request, exc: EtcdError) -> JSONResponse:
        return JSONResponse({"error": f"etcd unavailable from {cfg.site}: {exc}"}, status_code=503)

    return app
