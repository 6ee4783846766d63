"""The reference estate service: one small program, run for every plain service of a topology in
each of its sites, parameterised by the service's name and what it depends on.

`GET /` is a real request of the service: one acknowledged write to each database it depends on
(through its site's database door, so an ordinary client's path), and a call to each service it
depends on (through its site's front door). 200 when all of them answered within the deadline,
503 naming the first that did not. `GET /healthz` says the process is alive: the doors' health
checks use it, so a broken dependency shows as a 503, not as a missing instance.

Settings come from the environment (passwords stay out of argv):
FIREBREAK_SERVICE, FIREBREAK_SITE_NAME, FIREBREAK_SERVICE_DATABASES (JSON {cluster: dsn}),
FIREBREAK_SERVICE_CALLS (JSON {service: url}).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

import httpx
import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from firebreak.fdlimit import raise_open_files_limit
from firebreak.keepalive import APP_IDLE_S

DEADLINE = 1.0   # a dependency slower than this is down for this request
TABLE = "estate_writes"
SCHEMA = (f"CREATE TABLE IF NOT EXISTS {TABLE} (service text NOT NULL, site text NOT NULL, n bigint NOT NULL, "
          "at timestamptz NOT NULL, PRIMARY KEY (service, site))")
# One row per service and site, updated in place: the write is real (synchronous commit, on two
# sites) and storage does not grow however long the lab runs.
WRITE = (f"INSERT INTO {TABLE} (service, site, n, at) VALUES (%s, %s, 1, now()) "
         f"ON CONFLICT (service, site) DO UPDATE SET n = {TABLE}.n + 1, at = now() RETURNING n")


class Database:
    """One connection to one cluster, reconnected after any error: what a careful but ordinary
    client does. Requests take turns on it."""

    def __init__(self, name: str, dsn: str):
        self.name, self.dsn = name, dsn
        self.conn: psycopg.AsyncConnection | None = None
        self.lock = asyncio.Lock()

    async def write(self, service: str, site: str) -> int:
        async with self.lock:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                                      connect_timeout=max(1, int(DEADLINE)))
                cur = await self.conn.execute(WRITE, (service, site))
                row = await cur.fetchone()
                return int(row[0])
            except BaseException:
                await self.drop()
                raise

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 0.2)
            except BaseException:
                pass


def create_app(service: str, site: str, databases: dict[str, str], calls: dict[str, str]) -> Starlette:
    dbs = {name: Database(name, dsn) for name, dsn in databases.items()}
    http = httpx.AsyncClient(timeout=DEADLINE)

    async def one_db(db: Database) -> str | None:
        try:
            await asyncio.wait_for(db.write(service, site), DEADLINE)
            return None
        except asyncio.TimeoutError:
            return f"database {db.name}: no answer within {DEADLINE:.0f} s"
        except (psycopg.Error, OSError) as e:
            return f"database {db.name}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__}"

    async def one_call(name: str, url: str) -> str | None:
        try:
            r = await http.get(url)
        except httpx.HTTPError as e:
            return f"service {name}: {type(e).__name__}"
        return None if r.status_code == 200 else f"service {name}: HTTP {r.status_code}"

    async def index(request: Request) -> JSONResponse:
        started = time.monotonic()
        problems = [p for p in await asyncio.gather(*(one_db(d) for d in dbs.values()),
                                                    *(one_call(n, u) for n, u in calls.items())) if p]
        body = {"service": service, "site": site, "ok": not problems, "problems": problems,
                "took_s": round(time.monotonic() - started, 3)}
        return JSONResponse(body, status_code=200 if not problems else 503)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"service": service, "site": site})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await http.aclose()
        for d in dbs.values():
            await d.drop()

    return Starlette(routes=[Route("/", index), Route("/healthz", healthz)], lifespan=lifespan)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The lab's reference estate service.")
    parser.add_argument("--bind", required=True, help="ADDR:PORT")
    args = parser.parse_args()
    host, port = args.bind.rsplit(":", 1)
    raise_open_files_limit()
    app = create_app(os.environ["FIREBREAK_SERVICE"], os.environ["FIREBREAK_SITE_NAME"],
                     json.loads(os.environ.get("FIREBREAK_SERVICE_DATABASES", "{}")),
                     json.loads(os.environ.get("FIREBREAK_SERVICE_CALLS", "{}")))
    # Python's own loop, never uvloop (which uvicorn picks when installed): see claims/serve.py LOOP.
    # Idle connections kept longer than the door keeps its own (firebreak/keepalive.py).
    uvicorn.run(app, host=host, port=int(port), log_level="warning", access_log=False, loop="asyncio",
                timeout_keep_alive=APP_IDLE_S)


if __name__ == "__main__":
    main()
