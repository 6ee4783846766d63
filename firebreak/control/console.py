"""The ops console and API served by every site's agent: the state of every site, the primary,
routing, incidents, the outage ledger and the audit log, and the actions operators need,
working from whichever sites survive. State changes need an authenticated operator (token
as Bearer, or a login session with a CSRF token); every authenticated attempt is audited in etcd.
The console reads etcd as its agent's own etcd user, and makes the writes operators ask for (and
the audit log's) as the operators' user, `etcd_ops_access`: the agent's user may not make them.

The console shares its process and event loop with the failure detector, so nothing an anonymous
client sends may cost that loop time or etcd space: token checks are fast keyed hashes (auth.py),
failed attempts are rate-limited per source (429 with Retry-After) and counted, not stored, and
every field and body is capped. The actions themselves live in actions.py, one function each."""

from __future__ import annotations

import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import asdict

import httpx
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import generate_latest
from pydantic import ValidationError
from starlette.middleware.sessions import SessionMiddleware

from firebreak.control import auth, maintenance, ops
from firebreak.control.actions import ACTIONS, NO_OPS_IDENTITY, ActionIn, Context
from firebreak.control.agent import Agent
from firebreak.control.etcd import Etcd, EtcdError
from firebreak.control.keys import AUDIT_KEEP
from firebreak.errors import BadValue, Denied, OpsError
from firebreak.throttle import Buckets

log = logging.getLogger("firebreak.console")

# Failed sign-ins and bad tokens per source: a burst of 10, then one every 6 s. An operator who
# mistypes a token twice never notices; a flood gets 429s that cost nothing.
FAILURES_PER_S, FAILURE_BURST = 1 / 6, 10
AUDIT_PAGE = 100

_env = Environment(loader=PackageLoader("firebreak.control", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def ops_client(cfg) -> tuple[Etcd | None, str]:
    """The console's client as the operators' etcd user (etcd_ops_access), and why there is none.
    An unreadable access file does not stop the agent (it still protects the databases): the
    console refuses operators' actions and says why."""
    try:
        access = cfg.ops_access()
    except EtcdError as e:
        log.error("etcd_ops_access: %s; operators' actions are refused until it is fixed", e)
        return None, f"this console cannot use its operators' etcd identity (etcd_ops_access): {e}"
    if access is None:
        log.warning("no etcd_ops_access in the agent's config: the console refuses operators' actions")
        return None, NO_OPS_IDENTITY
    return Etcd(cfg.etcd, timeout=0.8, patience=2.0, access=access), ""


def create_console(agent: Agent) -> FastAPI:
    cfg = agent.cfg
    keys = cfg.keys
    http = httpx.AsyncClient(timeout=5)
    # Operators' requests may wait out an etcd election (a second or two after the site holding
    # etcd's leader is lost) instead of failing; the agent's own loops keep their fail-fast client.
    # Reads use the agent's etcd user; the writes operators ask for use the ops user, which is the
    # only one that may make them (control/keys.py role_grants).
    etcd = Etcd(cfg.etcd, timeout=0.8, patience=2.0, access=cfg.access())
    ops_etcd, ops_missing = ops_client(cfg)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            yield
        finally:
            for client in (etcd, ops_etcd):
                if client is not None:
                    await client.close()
            await http.aclose()

    app = FastAPI(title=f"Firebreak ops console ({cfg.site})", version="1", lifespan=lifespan)
    # Sessions are per console: a restart only asks people to log in again.
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict",
                       https_only=False, session_cookie=f"firebreak_{cfg.site}")
    ctx = Context(agent, etcd, http, ops_etcd, ops_missing or NO_OPS_IDENTITY)
    failures = Buckets(rate=FAILURES_PER_S, burst=FAILURE_BURST, max_sources=10_000)
    denied = {"count": 0, "logged_at": 0.0}

    def source(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def throttled(request: Request) -> JSONResponse | None:
        """429 for a source that has used up its failed attempts; nothing else is spent on it."""
        src, now = source(request), time.monotonic()
        wait = failures.retry_after(src, now)
        if wait <= 0:
            return None
        note_denial(src, "throttled")
        return JSONResponse({"ok": False, "error": f"too many failed attempts from {src}; retry in {wait:.0f} s"},
                            status_code=429, headers={"Retry-After": str(max(1, round(wait)))})

    def note_denial(src: str, why: str) -> None:
        # Counted and logged (at most once a second), never written to etcd: anonymous traffic
        # must not grow storage.
        denied["count"] += 1
        if agent.metrics is not None:
            agent.metrics.denied(why)
        now = time.monotonic()
        if now - denied["logged_at"] >= 1.0:
            denied["logged_at"] = now
            log.warning("refused %s request from %s (%d refused so far)", why, src, denied["count"])

    def failed_attempt(request: Request, why: str) -> None:
        failures.allow(source(request), time.monotonic())
        note_denial(source(request), why)

    async def audit(who: str, action: str, detail: dict, request: Request, outcome: str) -> None:
        """Written as the operators' etcd user (the agents' users may not write the audit log),
        and kept to the newest AUDIT_KEEP here, by the same user, right after each entry."""
        if ops_etcd is None:
            log.warning("not audited (no operators' etcd identity): %s %s by %s", action, outcome, who)
            return
        entry = ops.audit_entry(who, action, detail, cfg.site, source(request), outcome)
        try:
            await ops_etcd.put(keys.audit_entry(entry["at"], cfg.site), json.dumps(entry))
            listed = [kv.key for kv in await ops_etcd.get_prefix(keys.audit, keys_only=True)]
            cut = maintenance.prune_oldest(keys.audit, listed, AUDIT_KEEP, "audit log")
            if cut is not None:
                await ops_etcd.delete_range(cut.start, cut.end)
        except EtcdError:
            pass  # the action itself needs etcd too and will say so

    async def operator_of(request: Request, csrf: str | None = None) -> auth.Operator | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return await auth.authenticate(etcd, keys, header.removeprefix("Bearer ").strip()[:auth.MAX_TOKEN + 1])
        user = request.session.get("operator")
        if not user:
            return None
        given = csrf if csrf is not None else request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(given or "-", request.session.get("csrf", "") or "+"):
            return None
        # The role comes from etcd on every request, not from the cookie: a demoted or removed
        # operator loses their powers at once.
        kv = await etcd.get(keys.operator(user["name"]))
        if kv is None:
            return None
        return auth.Operator(user["name"], kv.json().get("role", "viewer"))

    def one_cluster(scope: str, c) -> dict:
        site_of = agent.site_of(scope)
        return {"leader": c.leader, "primary_site": site_of.get(c.leader) if c.leader else None,
                "sync_standbys": list(c.sync_standbys),
                "members": {n: {"role": m.role, "state": m.state, "site": site_of.get(n)}
                            for n, m in c.members.items()},
                "decision": agent.state.decisions.get(scope, "")}

    async def clusters_view() -> dict:
        return {scope: one_cluster(scope, c) for scope, c in (await agent.read_clusters()).items()}

    async def drained() -> set[str]:
        return {kv.key.rsplit("/", 1)[1] for kv in await agent.etcd.get_prefix(keys.drained)}

    async def status_doc() -> dict:
        # Status reads use the agent's fail-fast client: a console cut off from etcd says so at
        # once, and a client that knows every console asks the next one.
        st = agent.state
        now = agent.clock()
        try:
            every = await clusters_view()
            cluster = every.get(cfg.default_scope) or next(iter(every.values()), {"leader": None})
            drain = await drained()
            current = await agent.etcd.get(keys.release_current)
            frozen = await agent.etcd.get(keys.frozen) is not None
        except EtcdError as e:
            cluster, drain, current, frozen = {"error": str(e)}, set(), None, st.frozen
            every = {}
        primary = cluster.get("primary_site")
        dead = {s for s, v in st.verdicts.items() if v.dead}
        return {
            "site": cfg.site, "coordinator": st.coordinator, "is_coordinator": st.is_coordinator,
            "frozen": frozen, "primary": primary, "cluster": cluster,
            # Every cluster this agent protects, what each site holds of them, and the services.
            "clusters": every, "site_roles": _site_roles(every),
            "services": agent.estate()["services"] if cfg.services else {},
            "sites": {s: {"dead": v.dead, "reason": v.reason, "votes": list(v.votes), "drained": s in drain,
                          "components": st.components.get(s, {}),
                          "unreachable_for": round(max(0.0, now - st.last_ok.get(s, now)), 3)}
                      for s, v in st.verdicts.items()},
            "routing": ops.routing(list(cfg.sites), cfg.site, dead, drain,
                                   {s: e.door for s, e in cfg.sites.items()}),
            # The door's upstreams, best first; a dead one among them is skipped by its health checks.
            "door": {"url": cfg.sites[cfg.site].door, "upstreams": agent.door.order if agent.door else None},
            # The database door: where it sends writes and reads now, as last applied.
            "db_door": _db_door_status(agent),
            "release": _release_of(current),
            "last_decision": st.last_decision, "failovers": st.failovers,
            # Gray failures as this agent last saw them: links between living sites seen cut,
            # primaries' PostgreSQL answering nothing, and loop cycles that failed (control/cycles.py).
            "cut_links": sorted(sorted(link) for link in st.cut),
            "stalls": {m: {"stalled": v.dead, "reason": v.reason} for m, v in st.stalls.items()},
            "cycle_errors": dict(agent.cycles.errors),
            "incidents": [asdict(i) for i in st.open_incidents.values()],
            # etcd's storage: alarms (NOSPACE, CORRUPT), sizes per member against the quota, and a
            # warning a person can act on (also on the console page and in /metrics).
            "etcd": st.etcd_health,
        }

    async def run_action(action: str, body: ActionIn, request: Request, csrf: str | None = None) -> JSONResponse:
        if (limited := throttled(request)) is not None:
            return limited
        who = await operator_of(request, csrf)
        if who is None:
            failed_attempt(request, "unauthenticated")
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
            ctx.writer()
            result = await perform(ctx, body, who)
            await audit(who.name, action, detail, request, "ok")
            return JSONResponse({"ok": True, "action": action, "site": cfg.site, **result})
        except Denied as e:
            await audit(who.name, action, detail, request, f"denied: {e.message}")
            return JSONResponse({"ok": False, "action": action, "error": e.message}, status_code=e.status)
        except (EtcdError, OpsError) as e:
            await audit(who.name, action, detail, request, f"failed: {e}")
            return JSONResponse({"ok": False, "action": action, "error": str(e)}, status_code=503)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive", "site": cfg.site}

    @app.get("/api/status")
    async def status() -> dict:
        return await status_doc()

    @app.get("/api/estate")
    async def estate() -> dict:
        """The running estate as this site's agent sees it now (read by `firebreak check --live`)."""
        return agent.estate()

    @app.get("/api/routing")
    async def routing_api() -> dict:
        return (await status_doc())["routing"]

    @app.get("/api/ledger")
    async def ledger(limit: int = Query(AUDIT_PAGE, ge=1, le=1000), before: str | None = Query(None, max_length=80)) -> list:
        """Newest first, a page at a time: `before` is the `key` of the last entry of the previous page."""
        return await page_of(keys.ledger, limit, before)

    @app.get("/api/audit")
    async def audit_log(limit: int = Query(AUDIT_PAGE, ge=1, le=1000), before: str | None = Query(None, max_length=80)) -> list:
        """Newest first, a page at a time: `before` is the `key` of the last entry of the previous page."""
        return await page_of(keys.audit, limit, before)

    async def page_of(prefix: str, limit: int, before: str | None) -> list:
        """The newest `limit` entries older than the `before` entry. The audit log's keys sort newest
        first (keys.newest_first); the ledger's, short, sort by time and are read descending."""
        if prefix == keys.audit:
            kvs = await etcd.get_prefix(prefix, limit=limit, after=prefix + before if before else None)
        else:
            kvs = await etcd.get_prefix(prefix, limit=limit, descending=True, end=prefix + before if before else None)
        out = []
        for kv in kvs:
            try:
                out.append({**kv.json(), "key": kv.key[len(prefix):]})
            except (ValueError, TypeError):
                continue
        return out

    @app.post("/api/actions/{action}")
    async def action_api(action: str, body: ActionIn, request: Request) -> JSONResponse:
        return await run_action(action, body, request)

    # -- the web page -------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        try:
            doc = await status_doc()
            ledger_rows = list(reversed(await page_of(keys.ledger, 20, None)))
            audit_rows = list(reversed(await page_of(keys.audit, 15, None)))
        except EtcdError as e:
            doc, ledger_rows, audit_rows = {"site": cfg.site, "error": str(e), "sites": {}, "routing": {}}, [], []
        user = request.session.get("operator")
        if user and "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(24)
        if user:
            # The role shown is etcd's, as for every action: a removed operator is signed out.
            try:
                kv = await etcd.get(keys.operator(user["name"]))
            except EtcdError:
                kv = None
            user = {"name": user["name"], "role": kv.json().get("role", "viewer")} if kv else None
            if user is None:
                request.session.clear()
        flash = request.session.pop("flash", None)
        return HTMLResponse(_env.get_template("console.html").render(
            s=doc, user=user, csrf=request.session.get("csrf"), ledger=ledger_rows, audit=audit_rows,
            sites=list(cfg.sites), flash=flash, now=time.time()))

    @app.post("/login", response_model=None)
    async def login(request: Request, name: str = Form(..., max_length=32),
                    token: str = Form(..., max_length=auth.MAX_TOKEN)) -> RedirectResponse | JSONResponse:
        if (limited := throttled(request)) is not None:
            return limited
        who = await auth.authenticate(etcd, keys, f"{name}.{token}" if "." not in token else token)
        if who is None:
            failed_attempt(request, "login")
            request.session["flash"] = "login failed: unknown operator or wrong token"
        else:
            request.session.clear()
            request.session["operator"] = {"name": who.name}
            request.session["csrf"] = secrets.token_urlsafe(24)
            await audit(who.name, "login", {}, request, "ok")
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request, csrf: str = Form("")) -> RedirectResponse:
        if secrets.compare_digest(csrf, request.session.get("csrf", "") or "-"):
            request.session.clear()
        return RedirectResponse("/", status_code=303)

    @app.post("/actions/{action}")
    async def action_form(action: str, request: Request, csrf: str = Form("", max_length=64),
                          site: str = Form("", max_length=31), to: str = Form("", max_length=64),
                          cluster: str = Form("", max_length=64),
                          version: str = Form("", max_length=64), notes: str = Form("", max_length=2000)) -> RedirectResponse:
        try:
            body = ActionIn(site=site or None, to=to or None, cluster=cluster or None, version=version or None,
                            notes=notes)
        except ValidationError as e:
            request.session["flash"] = f"{action} refused: " + "; ".join(
                f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False))
            return RedirectResponse("/", status_code=303)
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


def _release_of(kv) -> dict | None:
    """release/current as the status shows it; a value that is not a release says so, and the
    rest of the status stands (trust the key, not the value)."""
    if kv is None:
        return None
    try:
        ops.release_of(kv.value)
        return kv.json()  # all of it: deploy adds where it rolled, by whom, when
    except BadValue as e:
        return {"error": str(e)}


def _site_roles(every: dict) -> dict:
    """site -> {cluster: role of its member}: what each building holds."""
    out: dict[str, dict[str, str]] = {}
    for scope, c in every.items():
        for name, m in (c.get("members") or {}).items():
            if m.get("site"):
                out.setdefault(m["site"], {})[scope] = m.get("role", "")
    return out


def _db_door_status(agent) -> dict | None:
    dd, keeper = agent.cfg.db_door, agent.db_door
    if dd is None:
        return None
    ports = dd.ports(agent.cfg.default_scope)
    per = (keeper.applied if keeper else None) or {}

    def one(scope: str) -> dict:
        r = per.get(scope)
        return {"port": ports[scope].port, "read_only_port": ports[scope].read_only_port,
                "writes_to": r.rw if r else None, "reads_from": list(r.ro) if r else [],
                "why": r.why if r else "not steered yet"}
    first = one(next(iter(ports)))
    # The first cluster's routes at the top (a door of one cluster), every cluster's under clusters.
    return {"host": dd.host, **first, "clusters": {scope: one(scope) for scope in ports},
            "error": (keeper.last_error or None) if keeper else None}
