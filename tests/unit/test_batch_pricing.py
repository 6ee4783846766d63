"""The vectorised batch pricer must agree with the one-report verification (verify.assess,
built on price(), and verify.duplicate_of) on every report: same value, same review, same flags."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firebreak.claims.batch import FLAG_NAMES, NONE, ReportTable, price_batch
from firebreak.claims.ledger import Outage, merged, verified_hours
from firebreak.claims.models import REPORTER_KINDS
from firebreak.claims.policy import Claim, Policy, price
from firebreak.claims.verify import Credited, assess, duplicate_of, first_of_claims
from tests.conftest import ROOT
from firebreak.claims.policy import load_policy

SERVICES = ["messenger", "taxi", "maps"]
KAKAO = load_policy(ROOT / "examples/kakao-2022-policy.yaml")
MIXED = Policy.model_validate({"name": "mixed", "flag_over_ratio": 2, "rules": [
    {"id": "taxi-hourly", "reporter_kinds": ["taxi_driver"], "services": ["taxi"], "per_hour": 7000,
     "min_downtime_hours": 1, "cap": 60000, "review_over": 50000},
    {"id": "shops", "reporter_kinds": ["channel_shop"], "evidence": ["receipt"],
     "tiers": [{"up_to": 100000, "pay": 10000}, {"up_to": 200000, "pay": 20000}, {"review": True}],
     "cap": 20000, "review_over": 20000},
    {"id": "paid", "reporter_kinds": ["paid_user"], "fee_percent": 35, "minimum": 500, "review_over": 3000, "cap": 5000},
    {"id": "sales", "reporter_kinds": ["other_partner"], "sales_percent": 80, "review_over": 90000, "cap": 120000},
    {"id": "free", "reporter_kinds": ["free_user"], "services": ["messenger"], "goodwill": "sticker"},
    {"id": "flat", "reporter_kinds": ["advertiser"], "flat": 15000, "cap": 15000, "review_over": 10000},
]})
OUTAGES = [Outage("messenger", 1000, 40000), Outage("taxi", 5000, 9000), Outage("*", 60000, 61800),
           Outage("taxi", 8000, 12000)]


@st.composite
def tables(draw):
    n = draw(st.integers(1, 60))
    kind = np.array([draw(st.integers(0, len(REPORTER_KINDS) - 1)) for _ in range(n)])
    service = np.array([draw(st.integers(0, len(SERVICES) - 1)) for _ in range(n)])
    start = np.array([draw(st.integers(0, 70000)) for _ in range(n)], dtype=float)
    end = start + np.array([draw(st.integers(1, 30000)) for _ in range(n)])
    claimed = np.array([draw(st.sampled_from([0, 50000, 100000, 100001, 200000, 300000, 500001, 9_000_000]))
                        for _ in range(n)], dtype=np.int64)
    contact = np.array([draw(st.integers(0, 4)) for _ in range(n)])
    typed = np.array([draw(st.sampled_from([0, 10_000_000])) for _ in range(n)], dtype=np.int64)  # never used
    evidence = np.array([draw(st.integers(0, 1)) for _ in range(n)], dtype=np.int64)
    fee = np.array([draw(st.sampled_from([NONE, 0, 3900, 9900, 2_000_000])) for _ in range(n)], dtype=np.int64)
    sales = np.array([draw(st.sampled_from([NONE, 0, 18000, 70000])) for _ in range(n)], dtype=np.int64)
    credited = np.array([draw(st.sampled_from([0, 0, 700, 60000])) for _ in range(n)], dtype=np.int64)
    credited_gw = np.array([draw(st.booleans()) for _ in range(n)], dtype=bool)
    return ReportTable(kind, service, SERVICES, start, end, claimed, contact, typed, evidence, ["receipt"],
                       fee, sales, credited, credited_gw)


@settings(max_examples=150, deadline=None)
@given(tables(), st.sampled_from([KAKAO, MIXED]))
def test_batch_agrees_with_one_by_one(table, policy):
    got = price_batch(policy, table, OUTAGES)
    for i in range(len(table)):
        svc = SERVICES[table.service[i]]
        same = [(j, table.start[j], table.end[j]) for j in range(len(table))
                if table.contact[j] == table.contact[i] and table.service[j] == table.service[i]]
        fee, sales = int(table.monthly_fee[i]), int(table.sales_per_hour[i])
        a = assess(policy, OUTAGES, reporter_kind=REPORTER_KINDS[table.kind[i]], service=svc,
                   start=table.start[i], end=table.end[i], claimed_amount=int(table.claimed[i]),
                   plan_price=int(table.plan_price[i]), evidence=("receipt",) if table.evidence[i] else (),
                   duplicate=duplicate_of((i, table.start[i], table.end[i]), same) is not None,
                   monthly_fee=None if fee == NONE else fee, sales_per_hour=None if sales == NONE else sales,
                   credited=Credited(int(table.credited[i]), bool(table.credited_goodwill[i])))
        assert abs(got.hours[i] - a.hours) < 1e-3
        assert got.amount[i] == a.amount, (i, a)
        assert bool(got.review[i]) == a.review, (i, a)
        assert bool(got.goodwill[i]) == (a.goodwill is not None)
        assert got.rule[i] == (-1 if a.rule is None else [r.id for r in policy.rules].index(a.rule))
        flags = {name for bit, name in FLAG_NAMES.items() if got.flags[i] & bit}
        assert flags == set(a.flags), (i, a)


def test_duplicates_are_found_by_account_and_overlapping_window_not_identical_text():
    # one account (key 7), three contacts' worth of reports: the windows differ by minutes
    t = ReportTable(np.zeros(4, dtype=np.int64), np.array([0, 0, 0, 1]), SERVICES,
                    np.array([1000.0, 1060, 5000, 1000]), np.array([4000.0, 4100, 9000, 4000]),
                    np.zeros(4, dtype=np.int64), np.array([7, 7, 7, 7]))
    flags = price_batch(KAKAO, t, OUTAGES).flags
    dup = [bool(f & 2) for f in flags]
    assert dup == [False, True, False, False]   # 3rd: a later, separate window; 4th: another service
    assert duplicate_of((1, 1060, 4100), [(0, 1000, 4000), (2, 5000, 9000)]) == 0
    assert duplicate_of((0, 1000, 4000), [(1, 1060, 4100)]) is None
    assert duplicate_of((3, 10, 20), [(1, 0, 11), (2, 19, 30)]) == 1   # a chain is one claim


def test_merged_outages_and_verified_hours():
    assert merged(OUTAGES, "taxi") == [(5000, 12000), (60000, 61800)]
    assert verified_hours([(0, 3600), (7200, 10800)], 1800, 9000) == 1.0


def _pairwise_first(report, others):
    """The definition, searched pairwise (what the verifier used to run on the app's loop)."""
    rid, s, e = report
    group, rest = {rid: (s, e)}, {i: (a, b) for i, a, b in others if i != rid}
    grew = True
    while grew:
        grew = False
        for i, (a, b) in list(rest.items()):
            if any(a < y and x < b for x, y in group.values()):
                group[i] = rest.pop(i)
                grew = True
    return min(group)


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 15)), max_size=25))
def test_the_sorted_sweep_finds_the_same_claims_as_the_pairwise_definition(windows):
    reports = [(i, float(s), float(s + length)) for i, (s, length) in enumerate(windows)]
    firsts = first_of_claims(reports)
    assert set(firsts) == {r[0] for r in reports}
    for r in reports:
        assert firsts[r[0]] == _pairwise_first(r, reports)
        assert duplicate_of(r, reports) == (None if firsts[r[0]] == r[0] else firsts[r[0]])


def test_windows_that_only_touch_are_separate_claims_and_ties_go_to_the_earliest_id():
    assert first_of_claims([(5, 0, 10), (2, 10, 20)]) == {5: 5, 2: 2}
    assert first_of_claims([(5, 0, 10), (2, 0, 10), (9, 9, 30)]) == {5: 2, 2: 2, 9: 2}


def test_one_contacts_hundred_thousand_overlapping_reports_are_one_claim():
    # The drill's writers send exactly this (one contact, one window); a search that is quadratic
    # in a claim's size takes minutes here instead of a fraction of a second.
    firsts = first_of_claims([(i, 1000.0 + (i % 7), 5000.0) for i in range(100_000, 0, -1)])
    assert len(firsts) == 100_000 and set(firsts.values()) == {1}
