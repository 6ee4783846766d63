"""Webhooks over real HTTP against a real PostgreSQL: two claims apps (two sites' notifiers) on one
database and one ledger file, and a real local receiver that checks every delivery with the check
docs/PUBLIC-RECORD.md gives subscribers. Each event reaches a subscriber exactly once when it
answers; one that fails first gets it again, signed again, with the same id; an incident that
ends in the ledger is announced as resolved. A subscribers file with a secret others may read
stops the service (exit 2) before it serves anything."""

import os
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import free_port, serve_app
from tests.web.receiver import Receiver


def wait_for(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what.__doc__ or what}")


def ledger(now: float, open_end=None) -> str:
    return f"""outages:
  - {{service: messenger, start: {now - 7200}, end: {now - 3600}, site: pangyo}}
  - {{service: taxi, start: {now - 600}, end: {"null" if open_end is None else open_end}, site: ansan}}
  - {{service: mail, start: {now - 300}, end: {now - 200}, source: drill}}
"""


@pytest.fixture
def setup(tmp_path):
    secret = os.urandom(24).hex().encode()
    (tmp_path / "sub.secret").write_bytes(secret)
    os.chmod(tmp_path / "sub.secret", 0o600)
    receiver = Receiver(secret)
    # A subscriber's 5 s and a lease of 11: the receiver is a thread of this process, which CI runs
    # at nice 19 beside the lab tests; an answer later than the timeout would be a second attempt.
    (tmp_path / "hooks.yaml").write_text(f"""public_url: https://status.example
subscribers:
  - {{url: "{receiver.url}/ok", secret_file: sub.secret}}
  - {{url: "{receiver.url}/flaky", secret_file: sub.secret}}
timeout_s: 5
lease_s: 11
retry_base_s: 0.5
poll_s: 0.3
""")
    (tmp_path / "ledger.yaml").write_text("outages: []\n")  # the incidents come once both notifiers run
    yield tmp_path, receiver

    receiver.server.shutdown()


def rows(dsn: str, url: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT subscriber, event_id, claimed_by, attempts, delivered_at IS NOT NULL, last_error "
                            "FROM webhook_deliveries WHERE subscriber LIKE %s ORDER BY event_id, subscriber",
                            (url + "%",)).fetchall()


def test_two_sites_notifiers_deliver_each_event_once_signed_and_retry_a_failure(claims_db, setup):
    d, receiver = setup
    env = {"FIREBREAK_LEDGER": str(d / "ledger.yaml"), "FIREBREAK_WEBHOOKS": str(d / "hooks.yaml")}
    (d / "ansan").mkdir()
    with serve_app(claims_db, d, **env) as (pangyo, _), \
            serve_app(claims_db, d / "ansan", FIREBREAK_SITE_NAME="ansan", **env) as (ansan, _):
        now = time.time()
        (d / "ledger.yaml").write_text(ledger(now))
        first, second = int(now - 7200), int(now - 600)
        expected = {f"incident-{first}-opened", f"incident-{first}-resolved-{int(now - 3600)}",
                    f"incident-{second}-opened"}

        def all_delivered():
            """every event at both subscribers, the flaky one's on a second attempt"""
            return ({g["event"] for g in receiver.at("/ok")} == expected
                    and {g["event"] for g in receiver.at("/flaky") if g["attempt"] == 2} == expected)
        wait_for(all_delivered)

        # the incident going on ends in the ledger: announced, by one of the two
        (d / "ledger.yaml").write_text(ledger(now, open_end=now + 1))
        resolved = f"incident-{second}-resolved-{int(now + 1)}"
        wait_for(lambda: any(g["event"] == resolved for g in receiver.at("/ok")))
        expected.add(resolved)
        wait_for(lambda: {g["event"] for g in receiver.at("/flaky") if g["attempt"] == 2} == expected)
        time.sleep(12)  # longer than the lease: nothing delivered is sent again by the other site

        ok = receiver.at("/ok")
        assert sorted(g["event"] for g in ok) == sorted(expected)  # exactly once each, from two notifiers
        assert all(g["ok"] for g in receiver.got), "a delivery failed the subscriber's check"
        assert all(g["attempt"] == 1 for g in ok)
        flaky = receiver.at("/flaky")
        assert sorted((g["event"], g["attempt"]) for g in flaky) == sorted(
            (e, a) for e in expected for a in (1, 2))  # the failed first attempt, then once more
        body = next(g["body"] for g in ok if g["event"] == resolved)
        assert body == {"id": resolved, "type": "incident.resolved", "incident": second, "state": "resolved",
                        "start": body["start"], "end": body["end"], "services": ["taxi"], "sites": ["ansan"],
                        "causes": ["site ansan"], "url": f"https://status.example/incidents#incident-{second}"}
        assert not any("mail" in g["body"]["services"] for g in receiver.got)  # a drill is no incident

        db = rows(claims_db, receiver.url)
        assert len(db) == 2 * len(expected) and all(delivered for *_, delivered, _ in db)
        assert {r[3] for r in db if r[0].endswith("/ok")} == {1} and {r[3] for r in db if r[0].endswith("/flaky")} == {2}
        assert {r[2] for r in db} <= {"pangyo", "ansan"}

        # Each app counts its own attempts; between them, every delivery and every failed first try.
        counted = {"delivered": 0.0, "failed": 0.0}
        for url, site in ((pangyo, "pangyo"), (ansan, "ansan")):
            for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
                for sample in family.samples:
                    if sample.name == "firebreak_app_webhook_deliveries_total":
                        assert sample.labels["site"] == site
                        counted[sample.labels["outcome"]] += sample.value
        assert counted == {"delivered": 2 * len(expected), "failed": len(expected)}, counted


def test_a_secret_others_may_read_stops_the_service_before_it_serves(tmp_path):
    (tmp_path / "s.secret").write_text("s" * 32)
    os.chmod(tmp_path / "s.secret", 0o644)
    (tmp_path / "hooks.yaml").write_text("public_url: https://status.example\nsubscribers:\n"
                                         "  - {url: 'https://hooks.example/x', secret_file: s.secret}\n")
    env = dict(os.environ, FIREBREAK_SITE_NAME="pangyo", FIREBREAK_DSN="postgresql://127.0.0.1:9/x",
               FIREBREAK_LOCAL_DSN="postgresql://127.0.0.1:9/x", FIREBREAK_WEBHOOKS=str(tmp_path / "hooks.yaml"))
    r = subprocess.run([sys.executable, "-m", "firebreak.claims.serve", "--bind", f"127.0.0.1:{free_port()}"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert (f"{tmp_path}/hooks.yaml: line 3: subscribers[0].secret_file: {tmp_path}/s.secret is readable by group or "
            f"others (mode 0644); run: chmod 600 {tmp_path}/s.secret") in r.stderr
