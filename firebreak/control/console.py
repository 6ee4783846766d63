"""The ops console and API served by every site's agent: state, verdicts, ledger, and the
actions operators need, available from whichever sites survive."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from firebreak.control.agent import Agent
from firebreak.control.etcd import EtcdError


def create_console(agent: Agent) -> FastAPI:
    app = FastAPI(title=f"Firebreak ops console ({agent.cfg.site})", version="1")

    def require_operator(authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(401, "operator token required: Authorization: Bearer <token>")
        token = authorization.removeprefix("Bearer ").strip()
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not hmac.compare_digest(digest, agent.cfg.ops_token_sha256):
            raise HTTPException(403, "operator token not accepted")
        return "operator"

    async def audit(who: str, action: str, detail: dict, request: Request) -> None:
        entry = {"at": time.time(), "who": who, "action": action, "detail": detail, "site": agent.cfg.site,
                 "client": request.client.host if request.client else None}
        # etcd holds the audit log: it is replicated to every site and survives the loss of one.
        await agent.etcd.put(f"{agent.key_audit}{entry['at']:.6f}-{agent.cfg.site}", json.dumps(entry))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive", "site": agent.cfg.site}

    @app.get("/api/status")
    async def status() -> dict:
        st = agent.state
        now = agent.clock()
        cluster = None
        try:
            c = await agent.read_cluster()
            cluster = {"leader": c.leader, "sync_standbys": list(c.sync_standbys),
                       "members": {n: {"role": m.role, "state": m.state} for n, m in c.members.items()}}
        except EtcdError as e:
            cluster = {"error": str(e)}
        primary = agent.cfg.site_of_member.get(cluster.get("leader")) if cluster.get("leader") else None
        return {
            "site": agent.cfg.site,
            "coordinator": st.coordinator,
            "is_coordinator": st.is_coordinator,
            "frozen": st.frozen,
            "primary": primary,
            "cluster": cluster,
            "sites": {s: {"dead": v.dead, "reason": v.reason, "votes": list(v.votes),
                          "components": st.components.get(s, {}),
                          "unreachable_for": round(max(0.0, now - st.last_ok.get(s, now)), 3)}
                      for s, v in st.verdicts.items()},
            "last_decision": st.last_decision,
            "failovers": st.failovers,
            "incidents": [asdict(i) for i in st.open_incidents.values()],
        }

    @app.get("/api/ledger")
    async def ledger() -> list:
        try:
            return [kv.json() for kv in await agent.etcd.get_prefix(agent.key_ledger)]
        except EtcdError as e:
            raise HTTPException(503, f"etcd unavailable: {e}")

    @app.post("/api/freeze")
    async def freeze(request: Request, authorization: str | None = Header(default=None)) -> dict:
        who = require_operator(authorization)
        await agent.etcd.put(agent.key_frozen, json.dumps({"by": who, "at": time.time()}))
        await audit(who, "freeze", {}, request)
        return {"frozen": True}

    @app.post("/api/unfreeze")
    async def unfreeze(request: Request, authorization: str | None = Header(default=None)) -> dict:
        who = require_operator(authorization)
        await agent.etcd.delete(agent.key_frozen)
        await audit(who, "unfreeze", {}, request)
        return {"frozen": False}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        if agent.metrics is not None:
            for s, v in agent.state.verdicts.items():
                agent.metrics.dead.labels(agent.cfg.site, s).set(1 if v.dead else 0)
            agent.metrics.coordinator.labels(agent.cfg.site).set(1 if agent.state.is_coordinator else 0)
            return PlainTextResponse(generate_latest(agent.metrics.registry).decode())
        return PlainTextResponse("")

    @app.exception_handler(EtcdError)
    async def _etcd_down(request: Request, exc: EtcdError) -> JSONResponse:
        return JSONResponse({"error": f"etcd unavailable from {agent.cfg.site}: {exc}"}, status_code=503)

    return app
