"""The reviewer console over real HTTP: sign-in, roles, CSRF, decisions, bulk approval, the
audit log and the payout export (web and CLI)."""

import csv
import io
import re
import secrets
import subprocess

import httpx
import psycopg

from tests.conftest import FIREBREAK
from tests.web.test_portal import FORM, form_key, receipt_of


def add_user(dsn, name, role):
    password = secrets.token_urlsafe(12)
    r = subprocess.run([FIREBREAK, "claims", "user", "add", name, "--role", role, "--password-stdin", "--dsn", dsn],
                       input=password + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return password


def submit(c, **overrides):
    r = c.post("/report", data={**FORM, **overrides, "form_key": form_key(c.get("/").text)})
    assert r.status_code == 201, r.text
    return receipt_of(r.text)


def sign_in(base, name, password):
    c = httpx.Client(base_url=base, follow_redirects=False)
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/review/login").text).group(1)
    r = c.post("/review/login", data={"name": name, "password": password, "csrf": csrf})
    assert r.status_code == 303, r.text
    return c, re.search(r'name="csrf" value="([^"]+)"', c.get("/review").text).group(1)


def wait_verified(dsn, timeout=15.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            if conn.execute("SELECT count(*) FROM reports WHERE status = 'received'").fetchone()[0] == 0:
                return
        time.sleep(0.2)
    raise AssertionError("new reports were not verified in the background")


def report_id(dsn, receipt):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id FROM reports WHERE receipt = %s", (receipt,)).fetchone()[0]


def test_nothing_changes_without_a_signed_in_reviewer(claims_app):
    base = claims_app["url"]
    with httpx.Client(base_url=base) as c:
        rid = report_id(claims_app["dsn"], submit(c))
        assert c.get("/review", follow_redirects=False).status_code == 303
        assert c.post(f"/review/reports/{rid}/decide", data={"action": "approve"}).status_code == 401
        assert c.post("/review/bulk-approve", data={}).status_code == 401
        assert c.get("/review/export.csv").status_code == 401
    with psycopg.connect(claims_app["dsn"]) as conn:
        decided = conn.execute("SELECT status, decided_by FROM reports WHERE id = %s", (rid,)).fetchone()
    assert decided[0] in ("received", "verified") and decided[1] is None  # verified in the background, not decided


def test_anonymous_refusals_are_summarised_not_written_one_row_each(claims_db, tmp_path):
    """A wrong password and a flood of anonymous review requests: refused, and written as one
    summary row per period (here one second), not one synchronous row per request."""
    import time

    from tests.web.conftest import serve_app

    add_user(claims_db, "mallory-target", "approver")
    with serve_app(claims_db, tmp_path, FIREBREAK_ANONYMOUS_AUDIT_EVERY="1") as (url, _):
        with psycopg.connect(claims_db) as conn:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM review_audit").fetchone()[0]
        c = httpx.Client(base_url=url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/review/login").text).group(1)
        r = c.post("/review/login", data={"name": "mallory-target", "password": "not-the-password", "csrf": csrf})
        assert r.status_code == 401 and "Wrong name or password" in r.text
        flood = [c.post("/review/bulk-approve", data={}).status_code for _ in range(40)]
        # Without even a session cookie, the edge refuses them before any route: counted alike.
        bare = httpx.Client(base_url=url)
        flood += [bare.post("/review/bulk-approve", data={"kind": ""}).status_code for _ in range(10)]
        flood += [bare.post("/review/reports/1/decide", data={"action": "approve"}).status_code for _ in range(5)]
        assert set(flood) == {401}
        assert bare.post("/review/bulk-approve").json() == {"error": "sign in at /review/login first"}
        time.sleep(1.2)
        assert c.get("/review/export.csv").status_code == 401  # the next refusal writes the summary
        with psycopg.connect(claims_db) as conn:
            rows = conn.execute("SELECT who, action, detail FROM review_audit WHERE id > %s ORDER BY id",
                                (before,)).fetchall()
            stored = conn.execute("SELECT password_hash FROM reviewers WHERE name = 'mallory-target'").fetchone()[0]
    assert [(w, a) for w, a, _ in rows] == [("anonymous", "refused")] * 2, rows
    first, second = rows[0][2], rows[1][2]
    assert first["actions"] == {"login (wrong name or password)": 1}
    assert second["count"] == 57 and second["actions"] == {"bulk-approve": 51, "decide": 5, "export": 1}
    assert stored.startswith("$argon2")


def test_a_reviewer_removed_or_demoted_loses_it_on_the_next_request(claims_app):
    password = add_user(claims_app["dsn"], "demoted-dana", "approver")
    c, csrf = sign_in(claims_app["url"], "demoted-dana", password)
    assert c.get("/review/export.csv").status_code == 200
    with psycopg.connect(claims_app["dsn"]) as conn:
        conn.execute("UPDATE reviewers SET role = 'reviewer' WHERE name = 'demoted-dana'")
    assert c.get("/review/export.csv").status_code == 403  # the cookie said approver; the database does not
    with psycopg.connect(claims_app["dsn"]) as conn:
        conn.execute("DELETE FROM reviewers WHERE name = 'demoted-dana'")
    assert c.get("/review", follow_redirects=False).status_code == 303  # signed out


def test_roles_csrf_decisions_and_the_payout_export(claims_app, tmp_path):
    base, dsn = claims_app["url"], claims_app["dsn"]
    with httpx.Client(base_url=base) as c:
        clean = submit(c, contact="shop-clean@example.org")                       # 250,000 claimed: pays 30,000
        outside = submit(c, contact="shop-outside@example.org", window_start="2022-11-01T10:00",
                         window_end="2022-11-01T12:00")                           # no outage then
        big = submit(c, contact="shop-big@example.org", claimed_amount="900000")  # individual review
    wait_verified(dsn)  # the apps verify new reports in the background, every few seconds
    triager, tri_csrf = sign_in(base, "rita", add_user(dsn, "rita", "reviewer"))
    queue = triager.get("/review?queue=outside-outage").text
    assert outside in queue and clean not in queue
    # a reviewer cannot approve, and nobody acts without the session's CSRF token
    rid = report_id(dsn, clean)
    assert triager.post(f"/review/reports/{rid}/decide", data={"action": "approve", "csrf": tri_csrf}).status_code == 403
    assert triager.post(f"/review/reports/{report_id(dsn, outside)}/decide",
                        data={"action": "reject", "note": "no outage then"}).status_code == 403
    r = triager.post(f"/review/reports/{report_id(dsn, outside)}/decide",
                     data={"action": "reject", "note": "no outage then", "csrf": tri_csrf}, follow_redirects=False)
    assert r.status_code == 303

    approver, csrf = sign_in(base, "anna", add_user(dsn, "anna", "approver"))
    assert clean in approver.get("/review?queue=clean").text
    assert big in approver.get("/review?queue=needs-review").text
    r = approver.post("/review/bulk-approve", data={"csrf": csrf, "kind": "channel_shop"}, follow_redirects=False)
    assert r.status_code == 303
    r = approver.post(f"/review/reports/{report_id(dsn, big)}/decide",
                      data={"action": "approve", "amount": "70000", "note": "receipts checked", "csrf": csrf},
                      follow_redirects=False)
    assert r.status_code == 303
    with psycopg.connect(dsn) as conn:
        st = dict(conn.execute("SELECT receipt, status FROM reports WHERE receipt = ANY(%s)",
                               ([clean, outside, big],)).fetchall())
        audit = conn.execute("SELECT who, action, outcome FROM review_audit WHERE who IN ('rita', 'anna')").fetchall()
    assert st == {clean: "approved", outside: "rejected", big: "approved"}
    assert ("rita", "approve", "denied: role reviewer may not approve") in audit
    assert ("anna", "bulk-approve", "ok") in audit and ("rita", "reject", "ok") in audit

    web = {row["receipt"]: row for row in csv.DictReader(io.StringIO(approver.get("/review/export.csv").text))}
    assert web[clean]["amount"] == "30000" and web[big]["amount"] == "70000" and outside not in web
    assert triager.get("/review/export.csv").status_code == 403
    out = tmp_path / "payouts.csv"
    r = subprocess.run([FIREBREAK, "claims", "export", "--dsn", dsn, "-o", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    cli = {row["receipt"]: row for row in csv.DictReader(out.open())}
    assert cli[clean]["amount"] == "30000" and cli[clean]["decided_by"] == "anna"


def test_user_add_refuses_weak_or_malformed_input(claims_app):
    r = subprocess.run([FIREBREAK, "claims", "user", "add", "Bad Name", "--role", "boss", "--password-stdin",
                        "--dsn", claims_app["dsn"]], input="short\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "name 'Bad Name'" in r.stderr and "role 'boss'" in r.stderr and "at least 12" in r.stderr
    assert "Traceback" not in r.stderr


def test_price_the_database_in_bulk(claims_app, tmp_path):
    with httpx.Client(base_url=claims_app["url"]) as c:
        submit(c, contact="bulk@example.org")
    out = tmp_path / "quotes.csv"
    r = subprocess.run([FIREBREAK, "claims", "price", "--db", "--dsn", claims_app["dsn"], "--policy",
                        "examples/kakao-2022-policy.yaml", "--ledger", "examples/ledger-2022.yaml", "-o", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(claims_app["dsn"]) as conn:
        n = conn.execute("SELECT count(*) FROM reports").fetchone()[0]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == n and any(row["amount"] == "30000" for row in rows)
    both = subprocess.run([FIREBREAK, "claims", "price", "x.csv", "--db", "--policy", "examples/kakao-2022-policy.yaml"],
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not both" in both.stderr


def test_refusals_to_a_flooder_are_slowed_down_but_never_pile_up(claims_db, tmp_path):
    """An anonymous reviewer action is refused after the refusal delay, so a client that waits
    for each answer floods at one request per delay; past the hold limit, refusals go out at
    once (a flood cannot pin the app's memory with held requests)."""
    import asyncio
    import time

    from tests.web.conftest import serve_app

    with serve_app(claims_db, tmp_path, FIREBREAK_REFUSAL_DELAY="0.6", FIREBREAK_REFUSAL_HOLD="4") as (url, _):
        async def flood(n: int) -> list[tuple[int, float]]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                async def one() -> tuple[int, float]:
                    t0 = time.monotonic()
                    r = await c.post("/review/bulk-approve", data={"kind": ""})
                    return r.status_code, time.monotonic() - t0
                return await asyncio.gather(*(one() for _ in range(n)))

        alone = asyncio.run(flood(1))
        many = asyncio.run(flood(12))
    assert alone[0][0] == 401 and alone[0][1] >= 0.6
    assert {code for code, _ in many} == {401}
    held = [t for _, t in many if t >= 0.6]
    assert len(held) == 4, sorted(t for _, t in many)  # the hold limit, and no more
