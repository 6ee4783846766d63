"""The reference estate service against a real PostgreSQL: a request is one acknowledged write per
database it depends on, and an answer names what it could not reach."""

from __future__ import annotations

import secrets

import httpx
import psycopg
import pytest

from firebreak.claims.db import ensure_database
from firebreak.estate.service import SCHEMA, TABLE, create_app

@pytest.fixture(scope="module")
def estate_db(pg):
    password = secrets.token_urlsafe(16)
    ensure_database(pg["superuser_dsn"], password, dbname="estate", owner="estate")
    dsn = f"postgresql://estate:{password}@127.0.0.1:{pg['port']}/estate"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return dsn


def get(app, path: str = "/") -> httpx.Response:
    import asyncio

    async def go() -> httpx.Response:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
                return await c.get(path)
    return asyncio.run(go())


def test_a_request_is_one_acknowledged_write_per_database(estate_db):
    app = create_app("login", "ansan", {"users-db": estate_db}, {})
    r = get(app)
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["problems"] == []
    get(app)
    with psycopg.connect(estate_db) as conn:
        n = conn.execute(f"SELECT n FROM {TABLE} WHERE service = 'login' AND site = 'ansan'").fetchone()[0]
    assert n >= 2  # one row per service and site, updated in place: storage does not grow


def test_an_unreachable_database_or_service_is_a_503_naming_it(estate_db):
    app = create_app("payments", "siheung", {"payments-db": "postgresql://estate:x@127.0.0.1:1/estate",
                                             "users-db": estate_db}, {"login": "http://127.0.0.1:1/"})
    r = get(app)
    assert r.status_code == 503
    problems = r.json()["problems"]
    assert any(p.startswith("database payments-db:") for p in problems)
    assert any(p.startswith("service login:") for p in problems)
    assert not any("users-db" in p for p in problems)
    assert get(app, "/healthz").status_code == 200  # alive: the doors keep sending, the 503 says why
