"""The verifier on the real app and a real PostgreSQL (issue 31): what a report is worth comes
from the operator's accounts table and the ledger, never from what the reporter typed; duplicates
are found by account and overlapping window whatever contact each report gives; a claim above the
rule's review_over is never "clean"."""

import httpx
import psycopg

from firebreak.claims.ledger import load_ledger
from firebreak.claims.partners import key_line, new_key
from firebreak.claims.policy import load_policy
from firebreak.claims.review import QUEUE_SQL
from firebreak.claims.verify import assess
from firebreak.resources import example
from tests.conftest import FIREBREAK, ROOT
from tests.web.conftest import serve_app
from tests.web.test_review import wait_verified

LEDGER = ROOT / "examples" / "ledger-2022.yaml"
PAID = {"reporter_kind": "paid_user", "service": "messenger", "window_start": "2022-10-15T15:19:00+09:00",
        "window_end": "2022-10-16T01:30:00+09:00", "claimed_amount": 1000, "description": "paid plan"}


def test_fees_come_from_the_accounts_table_and_duplicates_from_the_account(claims_db, tmp_path):
    import subprocess

    accounts = tmp_path / "accounts.csv"
    accounts.write_text("account,kind,monthly_fee,services,sales_per_hour\n"
                        "acct-fee,paid_user,9900,messenger,\nacct-big,paid_user,3000000,messenger,\n")
    r = subprocess.run([FIREBREAK, "claims", "accounts", "load", str(accounts), "--dsn", claims_db],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    key = new_key()
    (tmp_path / "partners").write_text(key_line("verifier-test", key) + "\n")
    (tmp_path / "partners").chmod(0o600)
    sent = {
        "fee": {**PAID, "account": "acct-fee", "contact": "fee-one@example.org", "plan_price": 10_000_000},
        # the same account, another contact, a window shifted by minutes: the same claim again
        "again": {**PAID, "account": "acct-fee", "contact": "fee-two@example.org",
                  "window_start": "2022-10-15T15:25:00+09:00", "window_end": "2022-10-16T01:00:00+09:00"},
        "big": {**PAID, "account": "acct-big", "contact": "big@example.org"},
    }
    with serve_app(claims_db, tmp_path, FIREBREAK_PARTNER_KEYS=str(tmp_path / "partners"),
                   FIREBREAK_LEDGER=str(LEDGER)) as (url, _):
        receipts = {}
        for name, body in sent.items():
            r = httpx.post(url + "/api/reports", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert r.status_code == 201, r.text
            receipts[name] = r.json()["receipt"]
        wait_verified(claims_db)
    with psycopg.connect(claims_db) as conn:
        rows = {name: conn.execute(f"SELECT amount, flags, needs_review, account, {QUEUE_SQL['clean']} FROM reports "
                                   "WHERE receipt = %s", (rc,)).fetchone() for name, rc in receipts.items()}
    policy = load_policy(example("kakao-2022-policy.yaml"))
    fee = assess(policy, load_ledger(LEDGER), reporter_kind="paid_user", service="messenger",
                 start=1665814740.0, end=1665851400.0, claimed_amount=1000, monthly_fee=9900)
    amount, flags, review, account, clean = rows["fee"]
    assert account == "acct-fee" and amount == fee.amount and 0 < amount < 9900  # the fee's share, not 10,000,000
    assert flags == [] and clean
    assert "duplicate" in rows["again"][1] and not rows["again"][4]
    big_amount, _, big_review, _, big_clean = rows["big"]
    assert big_amount > 20_000 and big_review and not big_clean  # over the rule's review_over: a person looks


def test_postgresql_finds_each_reports_claim_as_the_definition_does(claims_db):
    """FIRST_OF_CLAIM_SQL (what the verifier runs) against verify.first_of_claims (the definition,
    tested against a pairwise search in tests/unit/test_batch_pricing.py) on random windows of a
    few accounts and contacts, touching, nested, chained and tied."""
    import random
    import secrets

    from firebreak.claims.review_store import FIRST_OF_CLAIM_SQL
    from firebreak.claims.verify import first_of_claims

    rnd = random.Random(7)
    tag = secrets.token_hex(4)  # this test's own accounts and contacts, removed at the end
    base = 1_665_814_740
    with psycopg.connect(claims_db, autocommit=True) as conn:
        rows = []
        for _ in range(300):
            who = rnd.choice([("account", f"{tag}-a{rnd.randrange(3)}"), ("contact", f"{tag}-c{rnd.randrange(3)}")])
            service = rnd.choice(["messenger", "taxi"])
            start = base + 60 * rnd.randrange(40)
            end = start + 60 * rnd.randrange(1, 8)
            account = who[1] if who[0] == "account" else None
            contact = who[1] if who[0] == "contact" else f"{tag}-someone@example.org"
            rid = conn.execute(
                "INSERT INTO reports (receipt, reporter_kind, service, window_start, window_end, claimed_amount, "
                "contact, site, account) VALUES (%s, 'paid_user', %s, to_timestamp(%s), to_timestamp(%s), 0, %s, "
                "'test', %s) RETURNING id", (secrets.token_hex(8), service, start, end, contact, account)).fetchone()[0]
            rows.append((rid, f"{who[0]}:{who[1]}", service, float(start), float(end), account, contact))
        try:
            expected: dict[int, int] = {}
            groups: dict[tuple[str, str], list] = {}
            for rid, who, service, s, e, _, _ in rows:
                groups.setdefault((who, service), []).append((rid, s, e))
            for kin in groups.values():
                expected.update(first_of_claims(kin))
            by_account = [r for r in rows if r[5] is not None]
            by_contact = [r for r in rows if r[5] is None]
            got = dict(conn.execute(FIRST_OF_CLAIM_SQL, (
                [r[5] for r in by_account], [r[2] for r in by_account],
                [r[6] for r in by_contact], [r[2] for r in by_contact], [r[0] for r in rows])).fetchall())
        finally:
            conn.execute("DELETE FROM reports WHERE contact LIKE %s OR account LIKE %s", (f"{tag}-%", f"{tag}-%"))
    assert got == expected
    assert sum(1 for rid, first in got.items() if rid != first) > 50  # duplicates were there to find
