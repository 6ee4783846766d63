"""The webhook notifier: the thin shell around webhooks.py. Every site's claims app runs one, in the
background (app.py's lifespan), never on a request's path: a page view writes nothing and waits
for no subscriber.

Each pass: the incidents as the public record shows them (the status page's view) -> the events
they call for (webhooks.events) -> those this notifier has not tried yet (webhooks.to_claim) ->
claimed in the database on the primary with INSERT ... ON CONFLICT DO NOTHING, so of every
site's notifier exactly one makes each row and sends it; then the deliveries due again
(webhooks.due: failed and backed off, or left unfinished longer than the lease by a sender that
died) are claimed again by bumping their attempt count, which again only one notifier wins. A
delivery is marked delivered after a 2xx answer; anything else is written down with the attempt
and retried. At least once: a subscriber dedupes on the event id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg

from firebreak.claims.clock import Clock
from firebreak.claims.status_page import StatusView
from firebreak.claims.store import Store
from firebreak.claims.subscribers import Webhooks
from firebreak.claims.webhooks import Event, Key, Pending, due, events, headers, remember, to_claim
from firebreak.errors import AnswerUnknown, OutcomeUnknown

log = logging.getLogger("firebreak.webhooks")

SENDS_AT_ONCE = 8
PENDING_PAGE = 500
ERROR_CHARS = 300

CLAIM_SQL = """
INSERT INTO webhook_deliveries (subscriber, event_id, payload, claimed_by)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (subscriber, event_id) DO NOTHING
RETURNING subscriber, event_id"""
PENDING_SQL = """
SELECT subscriber, event_id, extract(epoch FROM created_at)::float8, extract(epoch FROM claimed_at)::float8, attempts,
       last_error IS NOT NULL, extract(epoch FROM now())::float8
FROM webhook_deliveries
WHERE delivered_at IS NULL AND abandoned_at IS NULL AND subscriber = ANY(%s)
ORDER BY claimed_at LIMIT %s"""
# The attempt count is the claim's version: of two notifiers taking the same delivery over, one matches.
RECLAIM_SQL = """
UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_at = now(), claimed_by = %s, last_error = NULL
WHERE subscriber = %s AND event_id = %s AND attempts = %s AND delivered_at IS NULL AND abandoned_at IS NULL
RETURNING payload, attempts"""
DELIVERED_SQL = """
UPDATE webhook_deliveries SET delivered_at = now(), last_error = NULL
WHERE subscriber = %s AND event_id = %s AND delivered_at IS NULL"""
FAILED_SQL = """
UPDATE webhook_deliveries SET last_error = %s
WHERE subscriber = %s AND event_id = %s AND attempts = %s AND delivered_at IS NULL"""
ABANDON_SQL = """
UPDATE webhook_deliveries SET abandoned_at = now()
WHERE subscriber = %s AND event_id = %s AND attempts = %s AND delivered_at IS NULL"""

Send = tuple[str, str, bytes, int]  # subscriber, event id, body, attempt


class Notifier:
    def __init__(self, hooks: Webhooks, store: Store, view: Callable[[], Awaitable[StatusView]], site: str,
                 clock: Clock, deadline: float = 5.0, counted: Callable[[str], None] | None = None):
        self.hooks, self.store, self.view, self.site, self.clock = hooks, store, view, site, clock
        self.counted = counted or (lambda outcome: None)  # delivered | failed | abandoned, one per attempt
        self.deadline = deadline
        self.known: frozenset[Key] = frozenset()
        self._said = ""   # the last problem logged, so a long outage is one line, not one per pass
        self._stop = asyncio.Event()

    async def stop(self, task: asyncio.Task, grace: float = 2.0) -> None:
        """Let the pass under way finish (up to `grace`), then stop: a pass cancelled inside a
        transaction leaves its statement running on a connection the store is about to close."""
        self._stop.set()
        await asyncio.wait({task}, timeout=grace)
        task.cancel()

    async def run(self) -> None:
        """A pass every poll_s until stopped. A pass that fails for a reason nobody imagined is
        logged as a bug and the next one runs (STYLE.md, 9)."""
        timeout = httpx.Timeout(self.hooks.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    await self.tick(client)
                except (AnswerUnknown, OutcomeUnknown, psycopg.Error) as e:
                    self._problem(f"webhook notifier: the database did not answer ({e}); trying again in "
                                  f"{self.hooks.poll_s:g} s" + _schema_hint(e))
                except Exception:  # noqa: BLE001 - a loop survives its own bugs
                    log.exception("webhook notifier: unexpected error (a bug); the next pass runs in %g s",
                                  self.hooks.poll_s)
                try:
                    await asyncio.wait_for(self._stop.wait(), self.hooks.poll_s)
                except TimeoutError:
                    pass

    async def tick(self, client: httpx.AsyncClient) -> int:
        """One pass; returns how many deliveries it attempted."""
        view = await self.view()
        wanted = events(view.incidents, view.now, self.hooks.horizon_s, self.hooks.public_url)
        new = to_claim(self.known, wanted, [s.url for s in self.hooks.subscribers])
        sends: list[Send] = []
        if new:
            won = await self.store.on_primary(lambda conn: self._claim(conn, new), self.deadline)
            sends += [(s, e.id, e.body(), 1) for s, e in new if (s, e.id) in won]
        self.known = remember(self.known, wanted, [(s, e.id) for s, e in new])
        sends += await self.store.on_primary(self._take_over_due, self.deadline)
        if sends:
            await self._deliver(client, sends)
        self._said = ""
        return len(sends)

    async def _claim(self, conn: Any, new: list[tuple[str, Event]]) -> set[Key]:
        cur = await conn.execute(CLAIM_SQL, ([s for s, _ in new], [e.id for _, e in new],
                                             [e.body().decode() for _, e in new], [self.site] * len(new)))
        return {(r[0], r[1]) for r in await cur.fetchall()}

    async def _take_over_due(self, conn: Any) -> list[Send]:
        cur = await conn.execute(PENDING_SQL, ([s.url for s in self.hooks.subscribers], PENDING_PAGE))
        rows = await cur.fetchall()
        if not rows:
            return []
        now = rows[0][6]  # the database's clock, which wrote claimed_at: no skew between sites
        again, give_up = due([Pending(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows], now, self.hooks.retry)
        for p in give_up:
            await conn.execute(ABANDON_SQL, (p.subscriber, p.event_id, p.attempts))
            log.error("webhook %s to %s: abandoned after %d attempts; see webhook_deliveries.last_error",
                      p.event_id, p.subscriber, p.attempts)
            self.counted("abandoned")
        out: list[Send] = []
        for p in again:
            cur = await conn.execute(RECLAIM_SQL, (self.site, p.subscriber, p.event_id, p.attempts))
            row = await cur.fetchone()
            if row is not None:
                out.append((p.subscriber, p.event_id, row[0].encode(), row[1]))
        return out

    async def _deliver(self, client: httpx.AsyncClient, sends: list[Send]) -> None:
        gate = asyncio.Semaphore(SENDS_AT_ONCE)

        async def one(send: Send) -> tuple[Send, str | None]:
            async with gate:
                return send, await self._post(client, *send)
        results = await asyncio.gather(*(one(s) for s in sends))
        for (subscriber, event_id, _, attempt), error in results:
            if error is None:
                log.info("webhook %s to %s: delivered (attempt %d)", event_id, subscriber, attempt)
            else:
                log.warning("webhook %s to %s: attempt %d failed: %s", event_id, subscriber, attempt, error)
            self.counted("delivered" if error is None else "failed")

        async def record(conn: Any) -> None:
            for (subscriber, event_id, _, attempt), error in results:
                if error is None:
                    await conn.execute(DELIVERED_SQL, (subscriber, event_id))
                else:
                    await conn.execute(FAILED_SQL, (error, subscriber, event_id, attempt))
        # Not recorded (no primary now): the deliveries are sent again after the lease; a
        # subscriber dedupes on the event id.
        await self.store.on_primary(record, self.deadline)

    async def _post(self, client: httpx.AsyncClient, url: str, event_id: str, body: bytes, attempt: int) -> str | None:
        """None when the subscriber took it (2xx), else what went wrong. The answer's body is
        never read: a subscriber cannot make the notifier hold more than its status line."""
        secret = self.hooks.secret(url)
        if secret is None:
            return "no longer a subscriber"
        try:
            # One deadline for the whole attempt: httpx's applies to each phase (connect, write, read) apart.
            async with asyncio.timeout(self.hooks.timeout_s):
                async with client.stream("POST", url, content=body,
                                         headers=headers(secret, int(self.clock.time()), event_id, body, attempt)) as r:
                    if 200 <= r.status_code < 300:
                        return None
                    hint = "; redirects are not followed: give the final URL" if 300 <= r.status_code < 400 else ""
                    return f"HTTP {r.status_code}{hint}"
        except TimeoutError:
            return f"no answer within {self.hooks.timeout_s:g} s"
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"[:ERROR_CHARS]

    def _problem(self, message: str) -> None:
        if message != self._said:
            log.warning("%s", message)
            self._said = message


def _schema_hint(e: Exception) -> str:
    if isinstance(e, psycopg.errors.UndefinedTable):
        return "; the claims database has no webhook_deliveries table: apply the schema (firebreak.claims.db.migrate)"
    return ""
