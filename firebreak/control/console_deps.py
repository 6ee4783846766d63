"""What every console route shares: the console's etcd clients, its operator check, its audit
log writer and its throttle of failed attempts, and the typed dependency that hands them to a
route (`ConsoleDep`).

The console shares its process and event loop with the failure detector, so nothing an anonymous
client sends may cost that loop time or etcd space: token checks are fast keyed hashes (auth.py),
failed attempts are rate-limited per source (429 with Retry-After) and counted, not stored."""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from firebreak.control import auth, maintenance, ops
from firebreak.control.actions import NO_OPS_IDENTITY, Context, after_reply
from firebreak.control.agent import Agent
from firebreak.control.config import AgentConfig
from firebreak.control.etcd import Etcd, EtcdError
from firebreak.control.keys import AUDIT_KEEP, Keys
from firebreak.control.shared_read import SharedRead
from firebreak.throttle import Buckets

log = logging.getLogger("firebreak.console")

# Failed sign-ins and bad tokens per source: a burst of 10, then one every 6 s. An operator who
# mistypes a token twice never notices; a flood gets 429s that cost nothing.
FAILURES_PER_S, FAILURE_BURST = 1 / 6, 10
# The status, anonymous, is read from etcd at most once in this long, however many ask for it.
STATUS_FRESH_S = 0.25


def ops_client(cfg: AgentConfig) -> tuple[Etcd | None, str]:
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


def source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass
class Console:
    agent: Agent
    # Operators' requests may wait out an etcd election (a second or two after the site holding
    # etcd's leader is lost) instead of failing; the agent's own loops keep their fail-fast client.
    # Reads use the agent's etcd user; the writes operators ask for use the ops user, which is the
    # only one that may make them (control/keys.py role_grants).
    etcd: Etcd
    ops_etcd: Etcd | None
    http: httpx.AsyncClient
    actions: Context
    failures: Buckets
    denied: int = 0
    denied_logged_at: float = 0.0
    status_reads: SharedRead = field(default_factory=lambda: SharedRead(STATUS_FRESH_S))

    @classmethod
    def open(cls, agent: Agent) -> "Console":
        cfg = agent.cfg
        http = httpx.AsyncClient(timeout=5)
        etcd = Etcd(cfg.etcd, timeout=0.8, patience=2.0, access=cfg.access())
        ops_etcd, ops_missing = ops_client(cfg)
        return cls(agent, etcd, ops_etcd, http, Context(agent, etcd, http, ops_etcd, ops_missing or NO_OPS_IDENTITY),
                   Buckets(rate=FAILURES_PER_S, burst=FAILURE_BURST, max_sources=10_000))

    async def close(self) -> None:
        for client in (self.etcd, self.ops_etcd):
            if client is not None:
                await client.close()
        await self.http.aclose()

    @property
    def cfg(self) -> AgentConfig:
        return self.agent.cfg

    @property
    def keys(self) -> Keys:
        return self.agent.cfg.keys

    @property
    def site(self) -> str:
        return self.agent.cfg.site

    def throttled(self, request: Request) -> JSONResponse | None:
        """429 for a source that has used up its failed attempts; nothing else is spent on it."""
        src = source(request)
        wait = self.failures.retry_after(src, time.monotonic())
        if wait <= 0:
            return None
        self.note_denial(src, "throttled")
        return JSONResponse({"ok": False, "error": f"too many failed attempts from {src}; retry in {wait:.0f} s"},
                            status_code=429, headers={"Retry-After": str(max(1, round(wait)))})

    def note_denial(self, src: str, why: str) -> None:
        # Counted and logged (at most once a second), never written to etcd: anonymous traffic
        # must not grow storage.
        self.denied += 1
        if self.agent.metrics is not None:
            self.agent.metrics.denied(why)
        now = time.monotonic()
        if now - self.denied_logged_at >= 1.0:
            self.denied_logged_at = now
            log.warning("refused %s request from %s (%d refused so far)", why, src, self.denied)

    def failed_attempt(self, request: Request, why: str) -> None:
        self.failures.allow(source(request), time.monotonic())
        self.note_denial(source(request), why)

    async def audit(self, who: str, action: str, detail: dict, request: Request, outcome: str) -> None:
        """Written as the operators' etcd user (the agents' users may not write the audit log)
        before the action answers, and kept to the newest AUDIT_KEEP by the same user after it
        has answered (actions.after_reply)."""
        if self.ops_etcd is None:
            log.warning("not audited (no operators' etcd identity): %s %s by %s", action, outcome, who)
            return
        entry = ops.audit_entry(who, action, detail, self.site, source(request), outcome)
        keys = self.keys
        try:
            await self.ops_etcd.put(keys.audit_entry(entry["at"], self.site), json.dumps(entry))
        except EtcdError:
            return  # the action itself needs etcd too and will say so
        after_reply(self._prune_audit, "pruning the audit log")

    async def _prune_audit(self) -> None:
        keys = self.keys
        listed = [kv.key for kv in await self.ops_etcd.get_prefix(keys.audit, keys_only=True)]
        cut = maintenance.prune_oldest(keys.audit, listed, AUDIT_KEEP, "audit log")
        if cut is not None:
            await self.ops_etcd.delete_range(cut.start, cut.end)

    async def operator_of(self, request: Request, csrf: str | None = None) -> auth.Operator | None:
        """The operator a request comes from: a Bearer token, or a login session whose CSRF token
        (the form's `csrf`, else the X-CSRF-Token header) matches; None when neither holds."""
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            token = header.removeprefix("Bearer ").strip()[:auth.MAX_TOKEN + 1]
            return await auth.authenticate(self.etcd, self.keys, token)
        user = request.session.get("operator")
        if not user:
            return None
        given = csrf if csrf is not None else request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(given or "-", request.session.get("csrf", "") or "+"):
            return None
        # The role comes from etcd on every request, not from the cookie: a demoted or removed
        # operator loses their powers at once.
        kv = await self.etcd.get(self.keys.operator(user["name"]))
        if kv is None:
            return None
        return auth.Operator(user["name"], kv.json().get("role", "viewer"))


def console_of(request: Request) -> Console:
    return request.app.state.console


ConsoleDep = Annotated[Console, Depends(console_of)]
