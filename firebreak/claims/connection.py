"""Connections to whichever server is primary, fast when a site has lost power: hosts raced,
silent ones given up on, a deadline on every write, and a pool that retries steadily.

psycopg_pool retries a failing connection with exponential backoff (1, 2, 4, 8 s ...). After a
20 s failover that left the pool waiting 8-16 s more before it even tried the new primary
(measured: writes resumed 9 s after Patroni had promoted). Connecting costs little here (hosts are
raced, silent ones given up on after 0.3 s), so SteadyPool retries at a steady, short interval: a
subclass for our pools only, not a patch of psycopg_pool for the whole process (pinned by
tests/unit/test_pinned_internals.py against the installed psycopg_pool).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from firebreak.errors import OutcomeUnknown


class SteadyAttempt(AttemptWithBackoff):
    INITIAL_DELAY = 0.25
    DELAY_BACKOFF = 1.0


class SteadyPool(AsyncConnectionPool):
    """An AsyncConnectionPool whose reconnection attempts come every 0.25 s, not ever later."""

    async def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        await super()._add_connection(attempt or SteadyAttempt(timeout=self.reconnect_timeout), growing)


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


# A statement under way when the primary is said to have moved gets this long to answer before it
# is hung up on: a living server answers in milliseconds, one whose site lost power never does, and
# the word can be wrong (an agent that read the primary's site silent for a moment).
ABANDON_GRACE = 0.25


async def _bounded(conn: Any, work: Any, deadline: float, abandon: asyncio.Event | None = None) -> Any:
    """Run work on conn; if the server has not answered within deadline, or within ABANDON_GRACE
    of `abandon` being set (the primary moved away from the server conn leads to), hang up.

    Hang up rather than cancel: cancelling a commit that waits for the standby makes
    PostgreSQL report success, and a server that lost power never answers a cancel anyway.
    """
    task = asyncio.ensure_future(work)
    waiters: set[asyncio.Future[Any]] = {task}
    moved = asyncio.ensure_future(abandon.wait()) if abandon is not None else None
    if moved is not None:
        waiters.add(moved)
    try:
        done, _ = await asyncio.wait(waiters, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # Our caller gave up (a request cancelled, the app stopping). asyncio.wait leaves the
        # work running, on a connection the caller is about to hand back to its pool: hang up
        # here too, so nothing else is ever sent on it mid-statement.
        _hang_up(conn, task)
        raise
    finally:
        if moved is not None:
            moved.cancel()
    if task not in done and moved is not None and moved in done:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, min(ABANDON_GRACE, deadline)))
        if task not in done:
            _hang_up(conn, task)
            raise OutcomeUnknown("the primary moved while the server was answering")
    if task in done:
        return task.result()
    _hang_up(conn, task)
    raise OutcomeUnknown(f"no answer from the server within {deadline:g} s")


def _hang_up(conn: Any, task: "asyncio.Future[Any]") -> None:
    conn.pgconn.finish()
    task.add_done_callback(_discard_result)  # its socket is gone; it may never wake
    task.cancel()
