"""What the public may reach, over real HTTP against the real app and a real PostgreSQL: the
admin listener (FIREBREAK_ADMIN_BIND) and the public one without admin routes, metrics or docs;
the admin token whatever the header holds, failed attempts throttled and counted; API intake
limited per source like the portal, or per partner key."""

import subprocess
import sys

import httpx
import pytest

from firebreak.claims.partners import key_line, new_key
from firebreak.drill.workload import REPORT
from tests.web.conftest import free_port, serve_app

TOKEN = "door-t0ken"
HIDDEN = [("GET", "/metrics"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json"),
          ("POST", "/admin/release"), ("POST", "/admin/primary-moved"), ("GET", "/admin/anything")]


def metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_the_public_listener_serves_public_routes_only(claims_db, tmp_path):
    admin_port = free_port()
    with serve_app(claims_db, tmp_path, FIREBREAK_ADMIN_TOKEN=TOKEN,
                   FIREBREAK_ADMIN_BIND=f"127.0.0.1:{admin_port}") as (url, _):
        admin = f"http://127.0.0.1:{admin_port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for method, path in HIDDEN:  # even with the token: the route is not there
            r = httpx.request(method, url + path, headers=auth, json={"version": "v9"}, timeout=5)
            assert r.status_code == 404 and r.json() == {"error": "not found"}, (path, r.status_code)
        assert httpx.get(url + "/", timeout=5).status_code == 200  # the portal
        assert httpx.get(url + "/healthz", timeout=5).json()["status"] == "alive"
        # the admin listener has them
        r = httpx.post(admin + "/admin/release", json={"version": "v2"}, headers=auth, timeout=5)
        assert r.status_code == 200
        assert httpx.get(url + "/version", timeout=5).json()["version"] == "v2"  # one app state behind both
        assert httpx.post(admin + "/admin/primary-moved", headers=auth, timeout=5).status_code == 200
        assert httpx.post(admin + "/admin/primary-moved", timeout=5).status_code == 403
        schema = httpx.get(admin + "/openapi.json", timeout=5).json()
        assert "/api/reports" in schema["paths"] and "ReportIn" in schema["components"]["schemas"]
        assert "/admin/release" not in schema["paths"]
        assert "swagger" in httpx.get(admin + "/docs", timeout=5).text.lower()
        text = httpx.get(admin + "/metrics", timeout=5).text
    assert metric(text, 'firebreak_app_refusals_total{route="admin",site="pangyo",why="not-public"}') == len(HIDDEN)
    assert metric(text, 'firebreak_app_refusals_total{route="/admin/primary-moved",site="pangyo",why="admin-token"}') == 1


@pytest.mark.parametrize("path, method", [("/admin/primary-moved", "POST"), ("/admin/release", "POST"),
                                          ("/api/reports/1", "GET")])
def test_a_non_ascii_authorization_header_is_refused_not_a_500(claims_app, path, method):
    for value in ("Bearer 토큰".encode(), b"Bearer \xff\xfe", "토큰".encode()):
        r = httpx.request(method, claims_app["url"] + path, headers={"Authorization": value}, json={"version": "x"},
                          timeout=5)
        assert r.status_code in (401, 403), (path, value, r.status_code, r.text[:200])
        assert r.json()["error"]


def test_failed_admin_token_attempts_are_throttled_logged_and_counted(claims_db, tmp_path):
    with serve_app(claims_db, tmp_path, FIREBREAK_ADMIN_TOKEN=TOKEN, FIREBREAK_ADMIN_FAILURES_PER_MINUTE="3") as (url, _):
        tries = [httpx.post(url + "/admin/primary-moved", headers={"Authorization": f"Bearer guess{i}"}, timeout=5)
                 for i in range(6)]
        # the right token still passes from that source (the service's own tools may share it);
        # only wrong ones are held until the allowance returns
        right = httpx.post(url + "/admin/primary-moved", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        text = httpx.get(url + "/metrics", timeout=5).text
    codes = [t.status_code for t in tries]
    assert codes[:3] == [403] * 3 and set(codes[3:]) == {429}, codes
    assert all(t.headers.get("retry-after") for t in tries[3:])
    assert right.status_code == 200
    route = 'firebreak_app_refusals_total{route="/admin/primary-moved",site="pangyo",'
    assert metric(text, route + 'why="admin-token"}') == 3
    assert metric(text, route + 'why="admin-throttled"}') == 3
    log = (tmp_path / "app.log").read_text()
    assert "refused 1 admin request(s) without the service's admin token" in log  # the first, at once


def test_api_intake_is_limited_per_source_like_the_portal(claims_db, tmp_path):
    import time

    # 2 a minute: a burst of 1, then one every 30 s, so what the limit allowed does not depend on
    # how fast this machine sends (the default 20 a minute is the unit tests' table)
    with serve_app(claims_db, tmp_path, FIREBREAK_PORTAL_RATE="2") as (url, _):
        t0 = time.monotonic()
        answers = [httpx.post(url + "/api/reports", json={**REPORT, "contact": f"flood{i}@example.org"},
                              headers={"Idempotency-Key": f"limit-{tmp_path.name}-{i}"}, timeout=10)
                   for i in range(25)]
        elapsed = time.monotonic() - t0
        form = httpx.post(url + "/report", data={"form_key": "x"}, timeout=10)  # the same person's allowance
        text = httpx.get(url + "/metrics", timeout=5).text
    codes = [a.status_code for a in answers]
    assert codes[0] == 201 and codes.count(201) <= 1 + int(elapsed / 30) + 1, (codes, elapsed)
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(a.headers.get("retry-after") for a in limited)
    assert form.status_code == 429 or elapsed > 25
    assert metric(text, 'firebreak_app_refusals_total{route="/api/reports",site="pangyo",why="rate-limited"}') \
        == len(limited)


def test_a_partner_key_has_its_own_allowance_and_a_wrong_one_is_refused(claims_db, tmp_path):
    key = new_key()
    keys = tmp_path / "partners"
    keys.write_text("# bulk filers\n" + key_line("taxi-union", key) + "\n")
    keys.chmod(0o600)
    with serve_app(claims_db, tmp_path, FIREBREAK_PORTAL_RATE="20", FIREBREAK_PARTNER_KEYS=str(keys)) as (url, _):
        with httpx.Client(base_url=url, timeout=10) as c:
            bulk = [c.post("/api/reports", json={**REPORT, "contact": f"union{i}@example.org"},
                           headers={"Authorization": f"Bearer {key}"}) for i in range(40)]
            wrong = c.post("/api/reports", json=REPORT, headers={"Authorization": "Bearer fbp_guessed"})
            weird = c.post("/api/reports", json=REPORT, headers={"Authorization": "Bearer 열쇠".encode()})
    assert {b.status_code for b in bulk} == {201}
    assert wrong.status_code == 401 and "partner key is not known" in wrong.json()["error"]
    assert weird.status_code == 401


def test_a_partner_keys_file_others_can_read_stops_the_app_at_start(claims_db, tmp_path):
    keys = tmp_path / "partners"
    keys.write_text(key_line("taxi-union", new_key()) + "\n")
    keys.chmod(0o644)
    import os
    env = dict(os.environ, FIREBREAK_SITE_NAME="pangyo", FIREBREAK_DSN=claims_db, FIREBREAK_LOCAL_DSN=claims_db,
               FIREBREAK_PARTNER_KEYS=str(keys))
    r = subprocess.run([sys.executable, "-m", "firebreak.claims.serve", "--bind", f"127.0.0.1:{free_port()}"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "readable by others" in r.stderr and f"chmod 600 {keys}" in r.stderr and "Traceback" not in r.stderr
