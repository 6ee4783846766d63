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
        status = conn.execute("SELECT status FROM reports WHERE id = %s", (rid,)).fetchone()[0]
        denied = conn.execute("SELECT count(*) FROM review_audit WHERE who = 'anonymous' AND outcome LIKE 'denied%%'"
                              ).fetchone()[0]
    assert status == "received" and denied >= 3


def test_wrong_password_is_refused_and_audited(claims_app):
    add_user(claims_app["dsn"], "mallory-target", "approver")
    c = httpx.Client(base_url=claims_app["url"])
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/review/login").text).group(1)
    r = c.post("/review/login", data={"name": "mallory-target", "password": "not-the-password", "csrf": csrf})
    assert r.status_code == 401 and "Wrong name or password" in r.text
    with psycopg.connect(claims_app["dsn"]) as conn:
        assert conn.execute("SELECT count(*) FROM review_audit WHERE who = 'mallory-target' AND action = 'login' "
                            "AND outcome LIKE 'denied%%'").fetchone()[0] == 1
        stored = conn.execute("SELECT password_hash FROM reviewers WHERE name = 'mallory-target'").fetchone()[0]
    assert stored.startswith("$argon2")


def test_roles_csrf_decisions_and_the_payout_export(claims_app, tmp_path):
    base, dsn = claims_app["url"], claims_app["dsn"]
    with httpx.Client(base_url=base) as c:
        clean = submit(c, contact="shop-clean@example.org")                       # 250,000 claimed: pays 30,000
        outside = submit(c, contact="shop-outside@example.org", window_start="2022-11-01T10:00",
                         window_end="2022-11-01T12:00")                           # no outage then
        big = submit(c, contact="shop-big@example.org", claimed_amount="900000")  # individual review
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
