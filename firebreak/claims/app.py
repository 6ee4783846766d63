"""The reference service: damage-report intake over PostgreSQL, written to survive a site loss.

Writes go to whichever server is primary, found by libpq through the multi-host DSN. A 201 is
sent only after PostgreSQL confirmed a synchronous commit, so an acknowledged report exists on
two sites. Two PostgreSQL behaviours are handled on purpose:

* a commit whose wait for the synchronous standby is cancelled returns *success* with a
  WARNING although the row may exist on one node only; that is reported as 503 (outcome
  unknown), never as 201;
* a retried request whose first attempt committed locally but was never replicated would find
  its row on that primary; confirming it is itself a write transaction, whose commit waits for
  the standby, so a replay is never confirmed before the original is on two sites.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firebreak.claims.limits import MAX_BODY, scope_source
from firebreak.claims.models import ReportIn, ReportOut, StatusOut
from firebreak.control.keys import DEFAULT as DEFAULT_KEYS
from firebreak.errors import AnswerUnknown, KeyReused, OutcomeUnknown, Overloaded
from firebreak.resources import example
from firebreak.throttle import Buckets

# psycopg_pool retries a failing connection with exponential backoff (1, 2, 4, 8 s ...). After
# a 20 s failover that left the pool waiting 8-16 s more before it even tried the new primary
# (measured: writes resumed 9 s after Patroni had promoted). Connecting costs little here (hosts
# are raced, silent ones given up on after 0.3 s), so retry at a steady, short interval instead.
AttemptWithBackoff.INITIAL_DELAY = 0.25
AttemptWithBackoff.DELAY_BACKOFF = 1.0

SYNC_CANCEL_MARKERS = ("canceling wait for synchronous replication",
                       "might not have been replicated to the standby")
RECEIPT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: receipts are read aloud on phones
# Group commit: up to MAX_BATCH reports that arrived together share one transaction; WRITERS
# transactions may be waiting for the synchronous standby at once.
MAX_BATCH = 64
WRITERS = 4
DEFAULT_POLICY = example("kakao-2022-policy.yaml")


@dataclass
class Settings:
    site: str
    dsn: str
    local_dsn: str
    any_dsn: str = ""
    pool_size: int = 16
    # A write that has not been answered by then is abandoned (503, outcome unknown, retry with
    # the same key): a primary that lost power answers nothing, and TCP would take far longer.
    admin_token: str = ""
    write_deadline: float = 1.5
    read_deadline: float = 0.5
    # Reports waiting for their group commit. Without a primary the queue drains at nothing while
    # intake keeps arriving: past this many, a write is refused at once (503, Retry-After) instead
    # of waiting out its deadline in an ever longer line.
    write_queue: int = 2_048
    anonymous_audit_every: float = 60.0  # seconds between rows summarising anonymous refusals
    # Shared by every site's app, so a reviewer's session and a half-filled form work at any door.
    session_secret: str = ""
    trusted_proxies: frozenset[str] = frozenset()  # our doors: their X-Forwarded-For is believed
    portal_rate: float = 20.0     # form submissions and status lookups per source per minute
    api_rate: float = 5000.0      # API requests per source per second (partners' systems, drills)
    policy: str = str(DEFAULT_POLICY)
    ledger: str = ""              # an outage ledger file, added to what the agents recorded in etcd
    etcd: tuple[str, ...] = ()
    etcd_access: str = ""         # a locked etcd: the claims role's access file (it may read the ledger)
    ledger_prefix: str = DEFAULT_KEYS.ledger

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        return cls(site=env["FIREBREAK_SITE_NAME"], dsn=env["FIREBREAK_DSN"],
                   local_dsn=env["FIREBREAK_LOCAL_DSN"],
                   any_dsn=env.get("FIREBREAK_ANY_DSN") or env["FIREBREAK_LOCAL_DSN"],
                   pool_size=int(env.get("FIREBREAK_POOL_SIZE", "16")),
                   admin_token=env.get("FIREBREAK_ADMIN_TOKEN", ""),
                   write_deadline=float(env.get("FIREBREAK_WRITE_DEADLINE", "1.5")),
                   write_queue=int(env.get("FIREBREAK_WRITE_QUEUE", "2048")),
                   anonymous_audit_every=float(env.get("FIREBREAK_ANONYMOUS_AUDIT_EVERY", "60")),
                   session_secret=env.get("FIREBREAK_SESSION_SECRET", ""),
                   trusted_proxies=frozenset(x for x in env.get("FIREBREAK_TRUSTED_PROXIES", "").split(",") if x),
                   portal_rate=float(env.get("FIREBREAK_PORTAL_RATE", "20")),
                   api_rate=float(env.get("FIREBREAK_API_RATE", "5000")),
                   policy=env.get("FIREBREAK_POLICY", str(DEFAULT_POLICY)),
                   ledger=env.get("FIREBREAK_LEDGER", ""),
                   etcd=tuple(x for x in env.get("FIREBREAK_ETCD", "").split(",") if x),
                   etcd_access=env.get("FIREBREAK_ETCD_ACCESS", ""))


def request_digest(report: ReportIn) -> str:
    """What an idempotency key is bound to: the validated report, canonically serialised, so a
    retry that differs only in JSON spacing or key order is still the same request."""
    import hashlib
    return hashlib.sha256(report.model_dump_json().encode()).hexdigest()


class RacingConnection(psycopg.AsyncConnection):
    """Connects to every host of a multi-host DSN at once and keeps the first that qualifies.

    libpq tries hosts one after another, and a host that lost power answers nothing, so each
    new connection would first wait connect_timeout (at least 2 s) on the dead site. Racing
    the hosts makes a dead site cost nothing; target_session_attrs still decides who qualifies.
    """

    overall_timeout = 3.0
    silent_grace = 0.3

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> "RacingConnection":  # type: ignore[override]
        params = conninfo_to_dict(conninfo, **kwargs)
        hosts = str(params.get("host", "")).split(",")
        ports = str(params.get("port", "")).split(",")
        if len(hosts) < 2:
            return await super().connect(conninfo, **kwargs)
        if len(ports) == 1:
            ports = ports * len(hosts)
        base = super()

        async def one(host: str, port: str) -> psycopg.AsyncConnection:
            return await base.connect(make_conninfo(**{**params, "host": host, "port": port}))

        tasks = [asyncio.create_task(one(h, p)) for h, p in zip(hosts, ports)]
        winner, errors = None, []
        pending = set(tasks)
        deadline = asyncio.get_running_loop().time() + cls.overall_timeout
        while pending and winner is None:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t.exception() is None and winner is None:
                    winner = t.result()
                elif t.exception() is not None:
                    errors.append(t.exception())
            if winner is None and errors and pending:
                # Every host that answered said no; the rest are silent. A silent host that is
                # the primary would have answered by now in all but a dying network, so do not
                # wait out connect_timeout on it: fail fast and let the client retry.
                deadline = min(deadline, asyncio.get_running_loop().time() + cls.silent_grace)
        for t in tasks:
            t.cancel()
        for t, r in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True)):
            if isinstance(r, psycopg.AsyncConnection) and r is not winner:
                await r.close()
        if winner is None:
            raise psycopg.OperationalError("no server qualified: " + "; ".join(str(e).strip().splitlines()[0]
                                                                           for e in errors if str(e).strip())
                                           or "no server answered in time")
        return winner  # type: ignore[return-value]


def _discard_result(task: "asyncio.Future[Any]") -> None:
    if not task.cancelled():
        task.exception()


async def _bounded(conn: Any, work: Any, deadline: float) -> Any:
    """Run work on conn; if the server has not answered within deadline, hang up.

    Hang up rather than cancel: cancelling a commit that waits for the standby makes
    PostgreSQL report success, and a server that lost power never answers a cancel anyway.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=deadline)
    if done:
        return task.result()
    conn.pgconn.finish()
    task.add_done_callback(_discard_result)  # its socket is gone; it may never wake
    task.cancel()
    raise OutcomeUnknown(f"no answer from the server within {deadline:g} s")


def new_receipt() -> str:
    return "FB-" + "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(10))


class Store:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.primary = AsyncConnectionPool(settings.dsn, min_size=2, max_size=settings.pool_size, open=False,
                                           connection_class=RacingConnection,
                                           timeout=5, configure=self._configure_primary, name="primary",
                                           kwargs={"application_name": f"claims-{settings.site}"})
        self.local = AsyncConnectionPool(settings.local_dsn, min_size=1, max_size=4, open=False, timeout=1,
                                         name="local", kwargs={"application_name": f"claims-{settings.site}-ro"})
        # Any server that answers, primary or not: reads keep working while the site's own
        # server restarts and while the primary moves.
        self.anywhere = AsyncConnectionPool(settings.any_dsn, min_size=0, max_size=4, open=False, timeout=2,
                                            connection_class=RacingConnection, name="anywhere",
                                            kwargs={"application_name": f"claims-{settings.site}-ro"})
        self._ready_at = 0.0
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=settings.write_queue)
        # Bumped whenever a write goes unanswered: every pooled connection made before then may
        # lead to the same dead server, so it is hung up on instead of used.
        self.generation = 0
        self._ready = False

    async def _configure_primary(self, conn: psycopg.AsyncConnection) -> None:
        # Which server acknowledged a write, for drills that look for two primaries at once:
        # address, and the timeline of the WAL being written (it changes at each promotion).
        await conn.set_autocommit(True)
        cur = await conn.execute(
            "SELECT host(inet_server_addr()) || ':' || inet_server_port(), "
            "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), "
            "(SELECT system_identifier FROM pg_control_system())::text")
        server, timeline, sysid = await cur.fetchone()
        conn.info_firebreak = {"server": server, "timeline": int(timeline, 16), "system_id": sysid}
        conn.generation = self.generation
        await conn.set_autocommit(False)
        conn.sync_cancelled = []
        conn.add_notice_handler(lambda diag, c=conn: self._notice(c, diag))

    @staticmethod
    def _notice(conn: Any, diag: Any) -> None:
        text = (diag.message_primary or "") + " " + (diag.message_detail or "")
        if any(m in text for m in SYNC_CANCEL_MARKERS):
            conn.sync_cancelled.append(text)

    async def open(self) -> None:
        for pool in (self.primary, self.local, self.anywhere):
            await pool.open(wait=False)
        self._writers = [asyncio.create_task(self._writer()) for _ in range(WRITERS)]

    async def close(self) -> None:
        for task in getattr(self, "_writers", []):
            task.cancel()
        for pool in (self.primary, self.local, self.anywhere):
            await pool.close()

    async def submit(self, report: ReportIn, key: str | None) -> tuple[dict, bool, dict]:
        """Store a report; returns (row, replayed, identity of the primary that acknowledged it).

        Reports that arrive while earlier ones wait for their commit are written together, in
        one transaction with one synchronous commit (group commit): each still gets its 201 only
        after the standby confirmed that commit, and all of them share its outcome."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((report, key, fut))
        except asyncio.QueueFull:
            raise Overloaded(f"{self._queue.maxsize} reports are already waiting for the database") from None
        row, replayed, who = await fut
        if row is None:
            raise KeyReused("this Idempotency-Key was first used with a different report")
        return row, replayed, who

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._write(batch)
            except Exception as e:  # noqa: BLE001 - every waiter must hear the outcome
                err = e if isinstance(e, OutcomeUnknown) else OutcomeUnknown(str(e) or type(e).__name__)
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, _, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)

    async def _write(self, batch: list) -> list[tuple[dict, bool, dict]]:
        try:
            conn = await self._fresh_primary()
            try:
                return await _bounded(conn, self._insert(conn, [(r, k) for r, k, _ in batch]),
                                      self.settings.write_deadline)
            except OutcomeUnknown:
                self.generation += 1
                raise
            finally:
                await self.primary.putconn(conn)
        except (psycopg.Error, PoolTimeout) as e:
            if isinstance(e, psycopg.OperationalError):
                self.generation += 1
            raise OutcomeUnknown(str(e).strip().splitlines()[0] if str(e).strip() else "connection lost") from e

    async def _fresh_primary(self) -> Any:
        while True:
            conn = await self.primary.getconn()
            if conn.generation >= self.generation:
                return conn
            conn.pgconn.finish()  # returned closed, so the pool drops it without any I/O
            await self.primary.putconn(conn)

    async def _insert(self, conn: Any, items: list[tuple[ReportIn, str | None]]) -> list[tuple[dict, bool, dict]]:
        conn.sync_cancelled.clear()
        site = self.settings.site
        params: list[Any] = []
        digests = [request_digest(report) for report, _ in items]
        for i, (report, key) in enumerate(items):
            params += [i, new_receipt(), key, report.reporter_kind, report.service, report.window_start,
                       report.window_end, report.claimed_amount, report.description, report.contact,
                       report.language, site, report.plan_price, list(report.evidence), digests[i]]
        values = ", ".join(["(%s::int, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz, %s::bigint, %s, %s, %s, %s, "
                            "%s::bigint, %s::text[], %s)"] * len(items))
        results: list[tuple[dict, bool, dict] | None] = [None] * len(items)
        async with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO reports (receipt, idempotency_key, reporter_kind, service, window_start, window_end, "
                "claimed_amount, description, contact, language, site, plan_price, evidence, request_digest) "
                f"SELECT receipt, key, kind, service, ws, we, amount, descr, contact, lang, site, plan, ev, digest "
                f"FROM (VALUES {values}) AS v(n, receipt, key, kind, service, ws, we, amount, descr, contact, lang, "
                "site, plan, ev, digest) ORDER BY n "
                "ON CONFLICT (idempotency_key) DO NOTHING "
                "RETURNING id, receipt, reporter_kind, service, window_start, window_end, "
                "claimed_amount, status, site, created_at, idempotency_key", params)
            inserted = {}
            fresh = []
            for row in await cur.fetchall():
                k = row.pop("idempotency_key")
                if k is None:
                    fresh.append(row)
                else:
                    inserted[k] = row
            fresh_iter = iter(fresh)
            replays = []
            for i, (report, key) in enumerate(items):
                if key is None:
                    results[i] = (next(fresh_iter), False, conn.info_firebreak)
                elif key in inserted:
                    results[i] = (inserted.pop(key), False, conn.info_firebreak)
                else:
                    replays.append(i)
            if replays:
                # txid_current() gives this transaction an ID, so its COMMIT writes a record and
                # waits for the synchronous standby: a replay is confirmed only once the original
                # row, which precedes it in the WAL, is on two sites.
                keys = list({items[i][1] for i in replays})
                await cur.execute(
                    "SELECT id, receipt, reporter_kind, service, window_start, window_end, claimed_amount, status, "
                    "site, created_at, idempotency_key, request_digest, txid_current() AS _xid "
                    "FROM reports WHERE idempotency_key = ANY(%s)", (keys,))
                found = {}
                for row in await cur.fetchall():
                    row.pop("_xid", None)
                    found[row.pop("idempotency_key")] = row
                for i in replays:
                    row = dict(found[items[i][1]])
                    stored = row.pop("request_digest")
                    # A replay answers with the first report only if it is the same report (rows
                    # stored before digests were kept have none, and are taken at their word).
                    same = stored is None or stored == digests[i]
                    results[i] = (row if same else None, True, conn.info_firebreak)
        if conn.sync_cancelled:
            raise OutcomeUnknown("commit not confirmed by the synchronous standby")
        return results  # type: ignore[return-value]

    async def get(self, report_id: int) -> dict | None:
        return await self.read_one(
            "SELECT id, receipt, reporter_kind, service, window_start, window_end, claimed_amount, "
            "status, site, created_at FROM reports WHERE id = %s", (report_id,))

    async def lookup(self, receipt: str, contact: str) -> dict | None:
        return await self.read_one(
            "SELECT receipt, status, amount, goodwill, created_at FROM reports WHERE receipt = %s AND contact = %s",
            (receipt, contact))

    async def read_one(self, query: str, params: tuple) -> dict | None:
        """The row, or None when a server answered that there is none. When no server answered,
        nobody knows, and saying "no such report" would make a person file it again: raises
        AnswerUnknown (503)."""
        # The site's own server first (any role), then any server that answers, then the primary
        # (a replica may not have replayed a report written a moment ago).
        answered = False
        for pool in (self.local, self.anywhere, self.primary):
            try:
                conn = await pool.getconn(timeout=0.3)
            except (psycopg.Error, PoolTimeout, OSError):
                continue
            try:
                row = await _bounded(conn, self._select(conn, query, params), self.settings.read_deadline)
                answered = True
                if row is not None:
                    return row
            except psycopg.DataError:
                answered = True  # the server answered: no row can match what was asked (a NUL, say)
                continue
            except (psycopg.Error, OutcomeUnknown):
                continue
            finally:
                await pool.putconn(conn)
        if not answered:
            raise AnswerUnknown("no database server answered")
        return None

    @staticmethod
    async def _select(conn: Any, query: str, params: tuple) -> dict | None:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        row = await cur.fetchone()
        await conn.rollback()
        return row

    async def can_write(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at < 0.5:
            return self._ready
        try:
            async with self.primary.connection(timeout=2) as conn:
                cur = await conn.execute("SELECT NOT pg_is_in_recovery()")
                self._ready = bool((await cur.fetchone())[0])
        except Exception:  # noqa: BLE001 - any failure means "cannot write now"
            self._ready = False
        self._ready_at = now
        return self._ready


class AppMetrics:
    def __init__(self, site: str):
        self.registry = CollectorRegistry()
        self.requests = Counter("firebreak_app_requests_total", "HTTP requests", ["site", "route", "status"],
                                registry=self.registry)
        self.writes = Counter("firebreak_app_writes_total", "Report writes by outcome", ["site", "outcome"],
                              registry=self.registry)
        self.latency = Histogram("firebreak_app_request_seconds", "Request latency", ["site", "route"],
                                 registry=self.registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))


def create_app(settings: Settings) -> FastAPI:
    store = Store(settings)
    metrics = AppMetrics(settings.site)
    log = logging.getLogger("firebreak.claims")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await store.open()
        tasks = [asyncio.create_task(job()) for job in app.state.background]
        yield
        for t in tasks:
            t.cancel()
        await store.close()

    app = FastAPI(title="Firebreak claims", version="1", lifespan=lifespan,
                  description="Damage reports after a site outage: intake, status, review.")
    app.state.store = store
    app.state.background = []  # coroutines run for the app's life (the review's verifier)
    if not settings.session_secret:
        # Sessions and forms then work only at this one app: fine for a test, wrong for sites.
        log.warning("FIREBREAK_SESSION_SECRET is not set; using a random one for this process only")
        settings.session_secret = secrets.token_urlsafe(32)
    portal_buckets = Buckets(rate=settings.portal_rate / 60.0, burst=max(1.0, settings.portal_rate / 2))
    api_buckets = Buckets(rate=settings.api_rate, burst=max(1.0, settings.api_rate))
    login_buckets = Buckets(rate=10 / 60.0, burst=10)

    def source_of(request: Request) -> str:
        return scope_source(request.scope, settings.trusted_proxies)

    from firebreak.claims.sources import PolicySource
    policy_source = PolicySource(settings.policy)

    async def intake(body: bytes, idempotency_key: str | None) -> Response:
        """POST /api/reports, served by Edge before the framework's layers (and by the route)."""
        if idempotency_key is not None and len(idempotency_key) > 200:
            return JSONResponse({"error": "invalid report", "errors": [
                {"field": "Idempotency-Key", "reason": "at most 200 characters"}]}, status_code=422)
        try:
            report = ReportIn.model_validate_json(body)
        except ValidationError as e:
            return invalid(e)
        services = policy_source().services
        if report.service not in services:
            return JSONResponse({"error": "invalid report", "errors": [
                {"field": "service", "reason": f"not a service this compensation scheme covers; one of "
                                               f"{', '.join(services)}"}]}, status_code=422)
        try:
            row, replayed, who = await store.submit(report, idempotency_key)
        except KeyReused as e:
            # 422, as the IETF's Idempotency-Key draft asks for a key reused with another payload:
            # the request is well-formed, but cannot be processed under that key.
            metrics.writes.labels(settings.site, "key_reused").inc()
            return JSONResponse({"error": "invalid report", "errors": [
                {"field": "Idempotency-Key", "reason": f"{e}; nothing was stored. Send a new key for a new report, "
                                                       "or the same report to get its receipt again"}]},
                                status_code=422)
        except Overloaded as e:
            metrics.writes.labels(settings.site, "refused").inc()
            return JSONResponse({"error": f"too many reports waiting for the database ({e}); nothing was stored",
                                 "retry": "send the same request again in a few seconds with the same Idempotency-Key"},
                                status_code=503, headers={"Retry-After": "5"})
        except OutcomeUnknown as e:
            metrics.writes.labels(settings.site, "unknown").inc()
            log.warning("write outcome unknown: %s", e)
            return JSONResponse({"error": "database unavailable; the report may or may not be stored",
                                 "outcome": "unknown", "detail": str(e),
                                 "retry": "send the same request again with the same Idempotency-Key"},
                                status_code=503, headers={"Retry-After": "1"})
        headers = {"X-Firebreak-Primary": who["server"],
                   "X-Firebreak-Timeline": str(who["timeline"]), "X-Firebreak-System-Id": who["system_id"]}
        metrics.writes.labels(settings.site, "replayed" if replayed else "acknowledged").inc()
        if replayed:
            headers["Idempotent-Replay"] = "true"
        return Response(ReportOut.model_validate(row).model_dump_json(), status_code=201, headers=headers,
                        media_type="application/json")

    app.add_middleware(Edge, settings=settings, metrics=metrics, api=api_buckets, portal=portal_buckets,
                       fast={"/api/reports": intake})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry).decode())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(exc)

    def openapi() -> dict:
        # ReportIn is read by the intake handler itself, so FastAPI does not see it: add it.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            model = ReportIn.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(model.pop("$defs", {}))
            schemas["ReportIn"] = model
            # which services a report may name: the policy's, as intake enforces (at start-up)
            model["properties"]["service"]["enum"] = list(policy_source().services)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # The body is validated here rather than by FastAPI's dependency machinery: the intake path
    # runs a thousand times a second, and pydantic's JSON parser does the same job at a
    # fraction of the cost. The schema is still published for clients and fuzzers.
    @app.post("/api/reports", status_code=201, response_model=ReportOut,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/ReportIn"}}}},
                  "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                  "schema": {"type": "string", "maxLength": 200}}]},
              responses={
                  201: {"description": "stored (or, with the same key and report, stored before)",
                        # OpenAPI links: what a client (and schemathesis' stateful mode) does next
                        # with the answer: look the report up by receipt and contact.
                        "links": {"LookUpStatus": {
                            "operationId": "report_status_api_reports_status_post",
                            "requestBody": {"receipt": "$response.body#/receipt",
                                            "contact": "$request.body#/contact"}}}},
                  422: {"description": "invalid report: every field that is wrong, and why"},
                  503: {"description": "outcome unknown: send the same request again with the same key"}})
    async def submit(request: Request) -> Response:
        return await intake(await request.body(), request.headers.get("idempotency-key"))

    @app.exception_handler(AnswerUnknown)
    async def _unknown(request: Request, exc: AnswerUnknown) -> JSONResponse:
        return JSONResponse({"error": "temporarily unavailable: the answer is not known right now; "
                                      "try again in a minute (nothing you sent was lost)"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.get("/api/reports/{report_id}", response_model=ReportOut,
             responses={401: {"description": "the service's admin token is required"},
                        503: {"description": "no database server answered: unknown, try again"}})
    async def get_report(report_id: int, authorization: str | None = Header(default=None)) -> JSONResponse:
        """A report by its number: for the service's own tools (drills, operators), never the
        public. Numbers are sequential and the answer holds the receipt, which with a contact
        opens the report's status: a reporter uses POST /api/reports/status instead."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        if not settings.admin_token or not secrets.compare_digest(token, settings.admin_token):
            return JSONResponse({"error": "reading a report by its number needs the service's admin token; "
                                          "a reporter looks a report up by receipt and contact "
                                          "(POST /api/reports/status)"}, status_code=401)
        row = await store.get(report_id)
        if row is None:
            return JSONResponse({"error": f"no report {report_id}"}, status_code=404)
        return JSONResponse(ReportOut(**row).model_dump(mode="json"))

    app.state.release = {"version": "initial"}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive", "site": settings.site, "version": app.state.release.get("version")}

    @app.get("/version")
    async def version() -> dict:
        return {"site": settings.site, **app.state.release}

    @app.post("/admin/release", include_in_schema=False)
    async def release(request: Request, authorization: str | None = Header(default=None)) -> JSONResponse:
        # Pushed by the site's agent from the release store (a copy in every site).
        token = (authorization or "").removeprefix("Bearer ").strip()
        if not settings.admin_token or not secrets.compare_digest(token, settings.admin_token):
            return JSONResponse({"error": "not allowed"}, status_code=403)
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("version"), str):
                raise ValueError("a release needs a version")
        except ValueError as e:
            return JSONResponse({"error": f"invalid release: {e}"}, status_code=422)
        app.state.release = {k: body[k] for k in ("version", "notes", "created") if k in body}
        return JSONResponse({"ok": True, "site": settings.site, "version": body["version"]})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ok = await store.can_write()
        return JSONResponse({"ready": ok, "site": settings.site}, status_code=200 if ok else 503)

    @app.post("/api/reports/status", response_model=StatusOut,
              responses={404: {"description": "no such report"},
                         503: {"description": "no database server answered: unknown, try again"}})
    async def report_status(query: StatusQuery) -> JSONResponse:
        """A report's status, by its receipt number and the contact given with it."""
        row = await store.lookup(query.receipt.upper(), query.contact)
        if row is None:
            return JSONResponse({"error": "no report with this receipt number and contact"}, status_code=404)
        return JSONResponse(StatusOut(**row).model_dump(mode="json"))

    from starlette.middleware.sessions import SessionMiddleware

    from firebreak.claims.portal import register_portal
    from firebreak.claims.review import register_review
    from firebreak.claims.sources import OutageSource

    register_portal(app, store, settings, policy_source)
    register_review(app, store, settings, policy_source, OutageSource(settings), login_buckets,
                    source_of)
    app.add_middleware(SessionMiddleware, secret_key=settings.session_secret, session_cookie="firebreak_review",
                       max_age=8 * 3600, same_site="strict", https_only=False)
    return app


def invalid(exc: ValidationError | RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body", "reason": e["msg"]}
              for e in exc.errors()]
    return JSONResponse({"error": "invalid report", "errors": errors}, status_code=422)


class Edge:
    """Body-size and rate limits, request metrics and the answering site's header, as plain ASGI:
    Starlette's decorator middleware costs a task and a stream copy per request, which at a
    thousand reports a second is most of a core."""

    def __init__(self, app: Any, settings: Settings, metrics: AppMetrics, api: Buckets, portal: Buckets,
                 fast: dict | None = None):
        self.app, self.settings, self.metrics, self.api, self.portal = app, settings, metrics, api, portal
        self.fast = fast or {}  # POST paths answered here, without routing, sessions or dependencies
        self.site_header = (b"x-firebreak-site", settings.site.encode())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"})
        if scope["method"] == "POST":
            path = scope["path"]
            # A status lookup is a guess at a receipt and a contact: limited like the portal's form
            # (per person), not like partners' intake systems.
            buckets = (self.portal if path in ("/report", "/status", "/api/reports/status")
                       else self.api if path.startswith("/api/") else None)
            if buckets is not None:
                if not buckets.allow(scope_source(scope, self.settings.trusted_proxies), time.monotonic()):
                    return await self._refuse(send, 429, {"error": "too many requests from this address; "
                                                                   "wait and retry"}, [(b"retry-after", b"60")])
        t0 = time.monotonic()
        status = [500]

        async def send_with_site(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), self.site_header]
            await send(message)

        handler = self.fast.get(scope["path"]) if scope["method"] == "POST" else None
        try:
            if handler is not None:
                chunks, more = [], True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
                    if sum(map(len, chunks)) > MAX_BODY:  # sent without a length, or lying about it
                        return await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"})
                key = headers.get(b"idempotency-key")
                response = await handler(b"".join(chunks), key.decode("latin-1") if key is not None else None)
                await response(scope, receive, send_with_site)
            else:
                await self.app(scope, *self._capped(receive, send_with_site))
        finally:
            path = scope["path"] if handler is not None else getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(self.settings.site, path, str(status[0])).inc()
            self.metrics.latency.labels(self.settings.site, path).observe(time.monotonic() - t0)

    def _capped(self, receive: Any, send: Any) -> tuple[Any, Any]:
        """receive and send for every other route: a body sent without a length (chunked), or
        longer than it said, is cut at MAX_BODY with a 413, and the app, told the client left,
        sends nothing after it."""
        got, refused = [0], [False]

        async def capped_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                got[0] += len(message.get("body", b""))
                if got[0] > MAX_BODY and not refused[0]:
                    refused[0] = True
                    await self._refuse(send, 413, {"error": f"request body over {MAX_BODY} bytes"})
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused[0]:
                await send(message)
        return capped_receive, guarded_send

    async def _refuse(self, send: Any, code: int, body: dict, extra: list | None = None) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                self.site_header, *(extra or [])]})
        await send({"type": "http.response.body", "body": data})


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    receipt: str = Field(min_length=4, max_length=20)
    contact: str = Field(min_length=3, max_length=200)
