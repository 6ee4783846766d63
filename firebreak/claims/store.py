"""The store of damage reports: group commit to whichever server is primary, written to survive a site loss.

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
import functools
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from firebreak.claims.connection import RacingConnection, SteadyPool, _bounded
from firebreak.claims.models import ReportIn
from firebreak.claims.settings import Settings
from firebreak.errors import AnswerUnknown, KeyReused, OutcomeUnknown, Overloaded, ReportRefused

SYNC_CANCEL_MARKERS = ("canceling wait for synchronous replication",
                       "might not have been replicated to the standby")
RECEIPT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: receipts are read aloud on phones
assert len(RECEIPT_ALPHABET) == 32  # new_receipt takes 5 random bits a letter
# Group commit: up to MAX_BATCH reports that arrived together share one transaction; WRITERS
# transactions may be waiting for the synchronous standby at once.
MAX_BATCH = 64
WRITERS = 4
T = TypeVar("T")


def request_digest(report: ReportIn) -> str:
    """What an idempotency key is bound to: the validated report, canonically serialised, so a
    retry that differs only in JSON spacing or key order is still the same request."""
    return hashlib.sha256(report.model_dump_json().encode()).hexdigest()


def new_receipt() -> str:
    """Ten letters of RECEIPT_ALPHABET (32 of them: 5 bits each) from one draw of the OS's random
    source: secrets.choice per letter was ten draws, 2.4% of an app's CPU under intake (py-spy)."""
    n = secrets.randbits(50)
    return "FB-" + "".join(RECEIPT_ALPHABET[(n >> (5 * i)) & 31] for i in range(10))


INSERT_FIELDS = ("n", "receipt", "key", "kind", "service", "ws", "we", "amount", "descr", "contact", "lang", "site",
                 "plan", "ev", "digest", "account")
INSERT_CASTS = {"n": "::int", "ws": "::timestamptz", "we": "::timestamptz", "amount": "::bigint", "plan": "::bigint",
                "ev": "::text[]"}


@functools.lru_cache(maxsize=MAX_BATCH)
def insert_sql(rows: int) -> str:
    """The group commit's INSERT for `rows` reports, in PostgreSQL's own $n placeholders, built
    once per batch size. With psycopg's %s, a statement of more than 50 parameters (four reports)
    is parsed again on every execution: 12% of the app's profile under intake."""
    width = len(INSERT_FIELDS)
    values = ", ".join("(" + ", ".join(f"${r * width + i + 1}{INSERT_CASTS.get(f, '')}"
                                       for i, f in enumerate(INSERT_FIELDS)) + ")" for r in range(rows))
    return ("INSERT INTO reports (receipt, idempotency_key, reporter_kind, service, window_start, window_end, "
            "claimed_amount, description, contact, language, site, plan_price, evidence, request_digest, account) "
            "SELECT receipt, key, kind, service, ws, we, amount, descr, contact, lang, site, plan, ev, digest, account "
            f"FROM (VALUES {values}) AS v({', '.join(INSERT_FIELDS)}) ORDER BY n "
            "ON CONFLICT (idempotency_key) DO NOTHING "
            "RETURNING id, receipt, reporter_kind, service, window_start, window_end, "
            "claimed_amount, status, site, created_at, idempotency_key")


# The reads' pools: the site's own server, and any server that answers.
LOCAL_POOL_MAX = 4
ANYWHERE_POOL_MAX = 4


def most_connections(pool_size: int, hosts: int) -> int:
    """The most connections to PostgreSQL one app holds open at once: each of its pools full, and
    in the two that race (RacingConnection) a connection being made holds a socket per host until
    the first qualifies and the others are closed. A soak reads more than that as a leak."""
    return (pool_size + ANYWHERE_POOL_MAX) * hosts + LOCAL_POOL_MAX


async def _autocommit(conn: psycopg.AsyncConnection) -> None:
    """The read pools' connections: each read one round trip, no transaction left open. Set here,
    not as a connect argument: RacingConnection hands those to libpq, which knows no autocommit."""
    await conn.set_autocommit(True)


def _first_line(e: Exception, default: str) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else default


class Store:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.primary = SteadyPool(settings.dsn, min_size=2, max_size=settings.pool_size, open=False,
                                           connection_class=RacingConnection,
                                           timeout=5, configure=self._configure_primary, name="primary",
                                           kwargs={"application_name": f"claims-{settings.site}"})
        self.local = SteadyPool(settings.local_dsn, min_size=1, max_size=LOCAL_POOL_MAX, open=False, timeout=1,
                                         name="local", configure=_autocommit,
                                         kwargs={"application_name": f"claims-{settings.site}-ro"})
        # Any server that answers, primary or not: reads keep working while the site's own
        # server restarts and while the primary moves.
        self.anywhere = SteadyPool(settings.any_dsn, min_size=0, max_size=ANYWHERE_POOL_MAX, open=False, timeout=2,
                                            connection_class=RacingConnection, name="anywhere", configure=_autocommit,
                                            kwargs={"application_name": f"claims-{settings.site}-ro"})
        self._ready_at = 0.0
        self.last_submit = float("-inf")
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=settings.write_queue)
        # Bumped whenever a write goes unanswered: every pooled connection made before then may
        # lead to the same dead server, so it is hung up on instead of used.
        self.generation = 0
        # Set (and replaced) at each hang_up: writes under way on connections of the generation
        # before hang up at once, rather than wait out their deadline on a server that is gone.
        self._moved = asyncio.Event()
        self._ready = False

    async def _configure_primary(self, conn: psycopg.AsyncConnection) -> None:
        # The generation this connection was made in: a hang_up while it was being set up may
        # have been about the server it reached, so it counts as made before it.
        generation = self.generation
        # Which server acknowledged a write, for drills that look for two primaries at once:
        # address, and the timeline of the WAL being written (it changes at each promotion).
        await conn.set_autocommit(True)
        cur = await conn.execute(
            "SELECT host(inet_server_addr()) || ':' || inet_server_port(), "
            "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), "
            "(SELECT system_identifier FROM pg_control_system())::text")
        server, timeline, sysid = await cur.fetchone()
        conn.info_firebreak = {"server": server, "timeline": int(timeline, 16), "system_id": sysid}
        conn.generation = generation
        # Left in autocommit: intake's group commit is one INSERT, its own transaction, so each
        # batch is one round trip rather than three (BEGIN, INSERT, COMMIT: 7.5% of an app's
        # profile under intake). Work that needs more than one statement opens a transaction
        # (on_primary), which in autocommit is an explicit BEGIN ... COMMIT.
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
        self.last_submit = time.monotonic()  # the verifier yields to intake (review.verify_batch)
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
                # A batch of one whose values the database refused raises ReportRefused (nothing
                # stored, and that is known): its waiter hears so, not "outcome unknown" (a 503
                # seen in CI when load left the refused report alone in its batch).
                err = e if isinstance(e, (OutcomeUnknown, ReportRefused)) else OutcomeUnknown(str(e) or type(e).__name__)
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, _, fut), result in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(result, (ReportRefused, OutcomeUnknown)):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def _write(self, batch: list) -> list[tuple[dict, bool, dict]]:
        try:
            conn = await self._fresh_primary()
            items = [(r, k) for r, k, _ in batch]
            started = time.monotonic()
            try:
                results, replays, digests = await _bounded(conn, self._insert(conn, items),
                                                           self.settings.write_deadline, abandon=self._moved)
                if replays:
                    # Two statements, two transactions: what the INSERT stored is known stored
                    # whatever becomes of the replays' read, which decides the replays alone.
                    left = max(0.0, self.settings.write_deadline - (time.monotonic() - started))
                    try:
                        await _bounded(conn, self._confirm_replays(conn, items, digests, results, replays), left,
                                       abandon=self._moved)
                    except (OutcomeUnknown, psycopg.Error) as e:
                        if not isinstance(e, psycopg.ProgrammingError):
                            self.generation += 1
                        unknown = e if isinstance(e, OutcomeUnknown) else OutcomeUnknown(_first_line(e, "connection lost"))
                        for i in replays:
                            results[i] = unknown
                return results
            except OutcomeUnknown:
                self.generation += 1
                raise
            finally:
                await self.primary.putconn(conn)
        except (psycopg.DataError, psycopg.IntegrityError) as e:
            # The INSERT itself was refused, so its transaction rolled back: nothing of the batch
            # is stored, and that is known. One report's values must not cost the others theirs
            # (nor read to them as an unknown outcome): each is written again on its own.
            if len(batch) == 1:
                raise ReportRefused(_first_line(e, type(e).__name__)) from e
            return await self._write_each(batch)
        except (psycopg.Error, PoolTimeout) as e:
            if isinstance(e, psycopg.OperationalError):
                self.generation += 1
            raise OutcomeUnknown(_first_line(e, "connection lost")) from e

    async def _write_each(self, batch: list) -> list:
        """The batch's reports one transaction each: a result, or the ReportRefused of its own."""
        out: list = []
        for item in batch:
            try:
                out += await self._write([item])
            except ReportRefused as e:
                out.append(e)
        return out

    def hang_up(self) -> None:
        """The primary moved or went silent (the site's agent says so): every pooled connection
        made before now may lead to the old server, which a power cut leaves silent, so each is
        hung up on instead of used. Without it, an app that had no write in flight when the
        primary's site died learns only from its first write after the failover, a write deadline
        later (run 10's 3.16 s cut: 1.5 s of it on such a connection).

        Writes already under way and still unanswered ABANDON_GRACE later hang up too, each an
        unknown outcome its client retries with the same key: measured (bench/detector.py), batches sent to a primary whose site had just
        lost power held intake's writers until their 1.5 s deadline, after the new primary was
        already taking writes."""
        self.generation += 1
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def on_primary(self, work: Callable[[Any], Awaitable[T]], deadline: float | None = None) -> T:
        """`work(conn)` in one transaction on the primary, as intake's writes are: on a connection
        made after the primary last moved, bounded by `deadline` (the write deadline by default),
        hung up on rather than cancelled when the server is silent. No connection to be had:
        AnswerUnknown (nothing was done). No answer, or a commit the synchronous standby did not
        confirm: OutcomeUnknown (it may or may not have happened), and later writes take new
        connections. For the reviewer console and the verifier (review_store.ReviewStore)."""
        try:
            conn = await self._fresh_primary()
        except (psycopg.Error, PoolTimeout) as e:
            raise AnswerUnknown(f"no primary database server answered ({_first_line(e, type(e).__name__)})") from e

        async def in_transaction() -> T:
            async with conn.transaction():
                return await work(conn)
        try:
            conn.sync_cancelled.clear()
            result = await _bounded(conn, in_transaction(), deadline or self.settings.write_deadline,
                                    abandon=self._moved)
            if conn.sync_cancelled:
                raise OutcomeUnknown("commit not confirmed by the synchronous standby")
            return result
        except OutcomeUnknown:
            self.generation += 1
            raise
        except psycopg.OperationalError as e:
            self.generation += 1
            raise OutcomeUnknown(_first_line(e, "connection lost")) from e
        finally:
            await self.primary.putconn(conn)

    async def _fresh_primary(self) -> Any:
        while True:
            conn = await self.primary.getconn()
            if conn.generation >= self.generation:
                return conn
            conn.pgconn.finish()  # returned closed, so the pool drops it without any I/O
            await self.primary.putconn(conn)

    async def _insert(self, conn: Any, items: list[tuple[ReportIn, str | None]]) -> tuple[list, list[int], list[str]]:
        """The batch's INSERT: (a result for each report written now, None for a replay; the
        replays' indexes; each report's digest). OutcomeUnknown if its commit was not confirmed."""
        conn.sync_cancelled.clear()
        site = self.settings.site
        params: list[Any] = []
        digests = [request_digest(report) for report, _ in items]
        for i, (report, key) in enumerate(items):
            params += [i, new_receipt(), key, report.reporter_kind, report.service, report.window_start,
                       report.window_end, report.claimed_amount, report.description, report.contact,
                       report.language, site, report.plan_price, list(report.evidence), digests[i], report.account]
        results: list = [None] * len(items)
        # One statement in autocommit: one round trip, its own transaction, one synchronous
        # commit for the whole batch (_configure_primary).
        cur = psycopg.AsyncRawCursor(conn, row_factory=dict_row)
        await cur.execute(insert_sql(len(items)), params)
        inserted = {}
        fresh = []
        for row in await cur.fetchall():
            k = row.pop("idempotency_key")
            if k is None:
                fresh.append(row)
            else:
                inserted[k] = row
        if conn.sync_cancelled:
            raise OutcomeUnknown("commit not confirmed by the synchronous standby")
        fresh_iter = iter(fresh)
        replays = []
        for i, (report, key) in enumerate(items):
            if key is None:
                results[i] = (next(fresh_iter), False, conn.info_firebreak)
            elif key in inserted:
                results[i] = (inserted.pop(key), False, conn.info_firebreak)
            else:
                replays.append(i)
        return results, replays, digests

    async def _confirm_replays(self, conn: Any, items: list[tuple[ReportIn, str | None]], digests: list[str],
                               results: list, replays: list[int]) -> None:
        """Fill in the replays' results: each its first report's row, once that row is on two
        sites. The read's own transaction writes a WAL record (a transactional logical message)
        so that its commit waits for the synchronous standby, and the original row precedes it
        in the WAL. An ID alone does not make a commit wait (txid_current() did not: PostgreSQL
        waits only for a transaction that wrote WAL), so a batch of replays only was confirmed
        at once, though the original's own wait had been cancelled (its client told 503)."""
        conn.sync_cancelled.clear()
        keys = list({items[i][1] for i in replays})
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "WITH mark AS (SELECT pg_logical_emit_message(true, 'firebreak-replay', '') AS lsn) "
            "SELECT id, receipt, reporter_kind, service, window_start, window_end, claimed_amount, status, "
            "site, created_at, idempotency_key, request_digest FROM reports, mark "
            "WHERE idempotency_key = ANY(%s)", (keys,))
        found = {}
        for row in await cur.fetchall():
            found[row.pop("idempotency_key")] = row
        if conn.sync_cancelled:
            raise OutcomeUnknown("replay not confirmed by the synchronous standby")
        for i in replays:
            row = dict(found[items[i][1]])
            stored = row.pop("request_digest")
            # A replay answers with the first report only if it is the same report (rows
            # stored before digests were kept have none, and are taken at their word).
            same = stored is None or stored == digests[i]
            results[i] = (row if same else None, True, conn.info_firebreak)

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
        # The site's own server first (any role); if it is not there, any server that answers;
        # then, for a row not found, the primary (a replica may not have replayed a report written
        # a moment ago). A miss costs two queries, not three: a receipt guess is the flood's query.
        answered = False
        for pool in (self.local, self.anywhere, self.primary):
            if answered and pool is self.anywhere:
                continue
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
        # Every pool's connections are in autocommit: one round trip, no transaction left open.
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return await cur.fetchone()

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
