"""What the site's agent may tell the real app (over a real PostgreSQL): its release, and that
writes left the server they went to. Only with the service's admin token."""

import time

import httpx
import psycopg

from firebreak.drill.workload import REPORT
from tests.web.conftest import serve_app

TOKEN = "agent-t0ken"


def app_backends(dsn: str) -> set[int]:
    """Server processes of this test's app's primary pool (the read pools name themselves '-ro';
    the session's other apps call their site pangyo)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'claims-hooks'")}


def test_the_agents_hooks_need_the_admin_token(claims_db, tmp_path):
    with serve_app(claims_db, tmp_path, FIREBREAK_ADMIN_TOKEN=TOKEN) as (url, _):
        for path, body in (("/admin/release", {"version": "v2"}), ("/admin/primary-moved", None)):
            for auth in ({}, {"Authorization": "Bearer wrong"}):
                assert httpx.post(url + path, json=body, headers=auth, timeout=5).status_code == 403, (path, auth)
        assert httpx.get(url + "/version", timeout=5).json()["version"] == "initial"
        r = httpx.post(url + "/admin/release", json={"version": "v2"}, timeout=5,
                       headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and httpx.get(url + "/version", timeout=5).json()["version"] == "v2"


def test_after_primary_moved_no_pooled_connection_made_before_is_used(claims_db, tmp_path):
    """A power cut leaves the old primary silent: a write on a connection made before the move
    would wait out its deadline. After the agent's word, the next write goes on a new one."""
    with serve_app(claims_db, tmp_path, FIREBREAK_ADMIN_TOKEN=TOKEN, FIREBREAK_SITE_NAME="hooks") as (url, _):
        assert httpx.post(url + "/api/reports", json=REPORT, timeout=10).status_code == 201
        before = app_backends(claims_db)
        assert before, "the app's primary pool holds connections"
        r = httpx.post(url + "/admin/primary-moved", timeout=5, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        assert httpx.post(url + "/api/reports", json=REPORT, timeout=10).status_code == 201
        deadline = time.monotonic() + 10
        while (left := before & app_backends(claims_db)) and time.monotonic() < deadline:
            time.sleep(0.1)  # a server process ends a moment after its client hung up
        assert not left, f"connections made before the move are still open: {left}"
