"""The reviewer console over real HTTP: sign-in, roles, CSRF, decisions, bulk approval, the
audit log and the payout export (web and CLI)."""

import asyncio
import csv
import io
import re
import secrets
import subprocess
import time
from contextlib import asynccontextmanager

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


def test_anonymous_refusals_are_summarised_not_written_one_row_each(claims_db):
    """A wrong password and a flood of anonymous review requests: refused, and written as one
    summary row per period, not one synchronous row per request. The app's clock is held still
    and moved past the period by the test, so nothing depends on how fast the machine is."""
    add_user(claims_db, "mallory-target", "approver")
    clock = FakeClock()

    async def scenario() -> None:
        async with inproc_app(claims_db, clock, anonymous_audit_every=60.0) as (_, c, bare):
            csrf = re.search(r'name="csrf" value="([^"]+)"', (await c.get("/review/login")).text).group(1)
            r = await c.post("/review/login", data={"name": "mallory-target", "password": "not-the-password",
                                                    "csrf": csrf})
            assert r.status_code == 401 and "Wrong name or password" in r.text
            flood = [(await c.post("/review/bulk-approve", data={})).status_code for _ in range(40)]
            # Without even a session cookie, the edge refuses them before any route: counted alike.
            flood += [(await bare.post("/review/bulk-approve", data={"kind": ""})).status_code for _ in range(10)]
            flood += [(await bare.post("/review/reports/1/decide", data={"action": "approve"})).status_code
                      for _ in range(5)]
            assert set(flood) == {401}
            assert (await bare.post("/review/bulk-approve")).json() == {"error": "sign in at /review/login first"}
            with psycopg.connect(claims_db) as conn:  # still inside the period: one row so far
                assert conn.execute("SELECT count(*) FROM review_audit WHERE id > %s", (before,)).fetchone()[0] == 1
            clock.now += 61
            assert (await c.get("/review/export.csv")).status_code == 401  # the next refusal writes the summary

    with psycopg.connect(claims_db) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM review_audit").fetchone()[0]
    asyncio.run(scenario())
    with psycopg.connect(claims_db) as conn:
        rows = conn.execute("SELECT who, action, detail FROM review_audit WHERE id > %s ORDER BY id",
                            (before,)).fetchall()
        stored = conn.execute("SELECT password_hash FROM reviewers WHERE name = 'mallory-target'").fetchone()[0]
    assert [(w, a) for w, a, _ in rows] == [("anonymous", "refused")] * 2, rows
    first, second = rows[0][2], rows[1][2]
    assert first["actions"] == {"login (wrong name or password)": 1}
    assert second["count"] == 57 and second["actions"] == {"bulk-approve": 51, "decide": 5, "export": 1}
    assert second["seconds"] == 61.0
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
    if r.status_code == 200:  # other tests' clean reports in this database took the total over the policy's bar
        total = re.search(r'name="confirm_total" value="(\d+)"', r.text).group(1)
        upto = re.search(r'name="upto" value="(\d+)"', r.text).group(1)
        r = approver.post("/review/bulk-approve", data={"csrf": csrf, "kind": "channel_shop", "confirm": "yes",
                                                        "confirm_total": total, "upto": upto}, follow_redirects=False)
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


def test_refusals_to_a_flooder_are_held_but_never_pile_up(claims_db):
    """An anonymous reviewer action is refused after the refusal delay, so a client that waits
    for each answer floods at one request per delay; past the hold limit, refusals go out at
    once (a flood cannot pin the app's memory with held requests). The app's sleep is the
    test's: held refusals wait until the test lets them go, and the test counts them."""
    clock = FakeClock()

    async def scenario() -> None:
        async with inproc_app(claims_db, clock, refusal_delay=0.6, refusal_hold=4) as (app, _, bare):
            holder = app.state.services.holder
            alone = asyncio.create_task(bare.post("/review/bulk-approve", data={"kind": ""}))
            await until(lambda: holder.held == 1)
            assert not alone.done()  # held, not answered
            clock.release()
            assert (await alone).status_code == 401 and holder.total_held == 1
            clock.hold()
            many = [asyncio.create_task(bare.post("/review/bulk-approve", data={"kind": ""})) for _ in range(12)]
            await until(lambda: sum(t.done() for t in many) == 8)
            assert holder.held == 4 and sum(not t.done() for t in many) == 4  # the hold limit, and no more
            clock.release()
            answers = await asyncio.gather(*many)
            assert {r.status_code for r in answers} == {401}
            assert (holder.total_held, holder.total_at_once) == (5, 8)
            metrics = (await app_metrics(app)).splitlines()
            assert 'firebreak_app_refusals_held_total{how="held",site="pangyo"} 5.0' in metrics
            assert 'firebreak_app_refusals_held_total{how="at_once",site="pangyo"} 8.0' in metrics
            assert 'firebreak_app_refusals_total{route="/review/*",site="pangyo",why="anonymous-review"} 13.0' in metrics

    asyncio.run(scenario())


class FakeClock:
    """The app's clock in a test: time moves when the test says, and a sleep lasts until the test
    releases it (claims.clock.Clock)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._gate: asyncio.Event | None = None
        self.released = False

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def gate(self) -> asyncio.Event:
        if self._gate is None:
            self._gate = asyncio.Event()
        return self._gate

    def release(self) -> None:
        self.gate().set()

    def hold(self) -> None:
        self.gate().clear()

    async def sleep(self, seconds: float) -> None:
        await self.gate().wait()


async def until(condition, timeout: float = 20.0) -> None:
    """Wait for a condition with a deadline (never a fixed time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


async def app_metrics(app) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as c:
        return (await c.get("/metrics")).text


@asynccontextmanager
async def inproc_app(dsn: str, clock, **settings):
    """The real app over a real PostgreSQL, in this process with an injected clock, served through
    httpx's ASGI transport; yields (app, a client, another client with no cookies)."""
    from firebreak.claims.app import create_app
    from firebreak.claims.settings import Settings
    from tests.conftest import ROOT

    s = Settings(site="pangyo", dsn=dsn, local_dsn=dsn, any_dsn=dsn, session_secret=secrets.token_urlsafe(32),
                 refusal_delay=0, ledger=str(ROOT / "examples" / "ledger-2022.yaml"))
    for k, v in settings.items():
        setattr(s, k, v)
    app = create_app(s, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app", follow_redirects=False) as c, \
                httpx.AsyncClient(transport=transport, base_url="http://app") as bare:
            yield app, c, bare
