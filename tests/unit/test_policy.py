"""Compensation policy: loading with clear errors, and pricing as tables of claims and quotes."""

import pytest

from firebreak.claims.policy import Claim, Policy, load_policy, price
from firebreak.errors import InputError
from tests.conftest import ROOT

KAKAO = load_policy(ROOT / "examples/kakao-2022-policy.yaml")


@pytest.mark.parametrize("kind,claimed,amount,review,goodwill", [
    ("channel_shop", 0, 30000, False, None),
    ("channel_shop", 300000, 30000, False, None),      # "up to 300,000" includes 300,000
    ("channel_shop", 300001, 50000, False, None),
    ("taxi_driver", 500000, 50000, False, None),
    ("advertiser", 500001, 0, True, None),              # above that: individual review
    ("other_partner", 10_000_000, 0, True, None),
    ("free_user", 0, 0, False, "emoticon pack (3 free emoticons for 90 days)"),
])
def test_the_published_october_2022_scheme(kind, claimed, amount, review, goodwill):
    q = price(KAKAO, Claim(kind, "messenger", claimed, verified_hours=10.5))
    assert (q.amount, q.review, q.goodwill) == (amount, review, goodwill)
    assert q.rule is not None and q.reasons


def test_every_paying_rule_of_the_shipped_policy_is_capped_and_reviewed_above_a_threshold():
    assert KAKAO.approve_all_confirm_over == 1_000_000
    for rule in KAKAO.rules:
        assert rule.goodwill is not None or (rule.cap is not None and rule.review_over is not None), rule.id
    assert Policy.model_validate({"name": "t", "rules": [{"id": "g", "reporter_kinds": ["*"], "goodwill": "x"}]}
                                 ).approve_all_confirm_over == 1_000_000   # the default


def test_paid_user_gets_the_outage_share_of_the_fee_on_file_with_a_minimum():
    # Was: 100% of a typed plan price for any outage length (a 17-minute claim typed at 10,000,000
    # was paid 10,000,000). Now the account's fee, for the outage's share of a 30-day month.
    q = price(KAKAO, Claim("paid_user", "messenger", 10_000_000, 17 / 60, monthly_fee=3900))
    assert (q.amount, q.review) == (1000, False), q.reasons          # 3,900 × 0.28 h / 720 h, raised to 1,000
    q = price(KAKAO, Claim("paid_user", "messenger", 0, 72, monthly_fee=300_000))
    assert (q.amount, q.review) == (30_000, True), q.reasons          # over review_over 20,000: a person looks
    q = price(KAKAO, Claim("paid_user", "messenger", 0, 10))          # no account on file: priced by a person
    assert (q.amount, q.review) == (0, True) and "no monthly fee on file" in q.reasons[-1]


def test_partners_are_credited_by_declared_sales_but_reports_still_take_the_published_tiers():
    from firebreak.claims.policy import rule_for
    assert KAKAO.rules[rule_for(KAKAO, "taxi_driver", "taxi")].id == "small-business"
    assert KAKAO.rules[rule_for(KAKAO, "taxi_driver", "taxi", report=False)].id == "partner-sales"
    assert KAKAO.rules[rule_for(KAKAO, "paid_user", "mail", report=False)].id == "paid-user"


BIG = 10**9  # a cap and review threshold no test claim reaches, where the test is about something else


def policy(**rule):
    if "goodwill" not in rule:
        rule = {"cap": BIG, "review_over": BIG, **rule}
    return Policy.model_validate({"name": "t", "rules": [{"id": "r", "reporter_kinds": ["*"], **rule}]})


@pytest.mark.parametrize("rule,claim,amount,review", [
    ({"flat": 10000}, Claim("paid_user", "x", 0, 1), 10000, False),
    ({"per_hour": 1000}, Claim("paid_user", "x", 0, 2.5), 2500, False),
    ({"per_hour": 1000, "cap": 2000}, Claim("paid_user", "x", 0, 5), 2000, False),
    ({"per_hour": 1000, "minimum": 5000}, Claim("paid_user", "x", 0, 1), 5000, False),
    ({"fee_percent": 100}, Claim("paid_user", "x", 0, 72, monthly_fee=7200), 720, False),     # 72 h of 720 h
    ({"fee_percent": 50}, Claim("paid_user", "x", 0, 360, monthly_fee=9900), 2475, False),
    ({"fee_percent": 100, "cap": 500}, Claim("paid_user", "x", 0, 360, monthly_fee=9900), 500, False),
    ({"fee_percent": 100, "review_over": 400}, Claim("paid_user", "x", 0, 360, monthly_fee=9900), 4950, True),
    ({"fee_percent": 100}, Claim("paid_user", "x", 9_000_000, 1), 0, True),                 # no fee on file
    ({"sales_percent": 100}, Claim("taxi_driver", "x", 0, 2.5, sales_per_hour=18000), 45000, False),
    ({"sales_percent": 50}, Claim("taxi_driver", "x", 0, 2.5), 0, True),                    # no sales on file
    ({"flat": 10000, "min_downtime_hours": 3}, Claim("paid_user", "x", 0, 2.9), 0, False),   # "only outages over 3 h"
    ({"flat": 10000, "min_downtime_hours": 3}, Claim("paid_user", "x", 0, 3.1), 10000, False),
    ({"flat": 10000, "evidence": ["receipt"]}, Claim("paid_user", "x", 0, 5), 0, True),
    ({"flat": 10000, "evidence": ["receipt"]}, Claim("paid_user", "x", 0, 5, evidence=frozenset({"receipt"})), 10000, False),
    ({"flat": 90000, "review_over": 50000}, Claim("paid_user", "x", 0, 5), 90000, True),
])
def test_valuation_rules(rule, claim, amount, review):
    q = price(policy(**rule), claim)
    assert (q.amount, q.review) == (amount, review), q.reasons


def test_first_matching_rule_wins_and_no_rule_means_review():
    p = Policy.model_validate({"name": "t", "rules": [
        {"id": "taxi", "reporter_kinds": ["taxi_driver"], "services": ["taxi"], "flat": 1, "cap": 1, "review_over": 1},
        {"id": "rest", "reporter_kinds": ["taxi_driver"], "flat": 2, "cap": 2, "review_over": 2}]})
    assert price(p, Claim("taxi_driver", "taxi", 0, 1)).rule == "taxi"
    assert price(p, Claim("taxi_driver", "maps", 0, 1)).rule == "rest"
    q = price(p, Claim("free_user", "maps", 0, 1))
    assert q.rule is None and q.review and "no rule" in q.reasons[0]


BAD = [
    ("two valuations", "name: p\nrules:\n  - {id: a, reporter_kinds: ['*'], flat: 1, per_hour: 2, cap: 9, review_over: 9}\n",
     "p.yaml: rules[0]: a rule needs exactly one of flat, per_hour, fee_percent, sales_percent, tiers, goodwill (it has flat, per_hour)"),
    ("no valuation", "name: p\nrules:\n  - {id: a, reporter_kinds: ['*']}\n", "p.yaml: rules[0]: a rule needs exactly one of"),
    ("unknown kind", "name: p\nrules:\n  - {id: a, reporter_kinds: [taxi], flat: 1, cap: 9, review_over: 9}\n",
     "p.yaml: rules[0].reporter_kinds[0]: unknown reporter kind 'taxi' (did you mean 'taxi_driver'?)"),
    ("tiers out of order", "name: p\nrules:\n  - id: a\n    reporter_kinds: ['*']\n    tiers: [{up_to: 5, pay: 1}, {up_to: 3, pay: 2}, {review: true}]\n    cap: 9\n    review_over: 9\n",
     "p.yaml: rules[0]: tiers must be in increasing order of up_to"),
    ("negative amount", "name: p\nrules:\n  - {id: a, reporter_kinds: ['*'], flat: -5, cap: 9, review_over: 9}\n",
     "p.yaml: rules[0].flat: must be 0 or more, got -5"),
    ("duplicate id", "name: p\nrules:\n  - {id: a, reporter_kinds: ['*'], goodwill: x}\n  - {id: a, reporter_kinds: ['*'], goodwill: x}\n",
     "p.yaml: rules[1].id: rule id 'a' is used twice"),
    ("rule for a service the policy does not cover",
     "name: p\nservices: [messenger, taxi]\nrules:\n  - {id: a, reporter_kinds: ['*'], services: [taxii], goodwill: x}\n",
     "p.yaml: rules[0].services[0]: service 'taxii' is not in the policy's services (messenger, taxi) (did you mean 'taxi'?)"),
    ("unknown field", "name: p\nrules:\n  - {id: a, reporter_kinds: ['*'], flatt: 1}\n",
     "p.yaml: rules[0].flatt: unknown field (did you mean 'flat'?)"),
    ("a paying rule without a cap", "name: p\nrules:\n  - {id: fee, reporter_kinds: ['*'], flat: 1, review_over: 5}\n",
     "p.yaml: rules[0]: rule 'fee' pays money, so it needs cap: cap is the most one payout may be"),
    ("a paying rule without review_over or cap",
     "name: p\nrules:\n  - {id: g, reporter_kinds: ['*'], goodwill: x}\n  - id: shops\n    reporter_kinds: ['*']\n"
     "    tiers: [{pay: 1}]\n", "p.yaml: rules[1]: rule 'shops' pays money, so it needs cap and review_over"),
    ("a typed plan price", "name: p\nrules:\n  - {id: a, reporter_kinds: ['*'], plan_percent: 100, cap: 9, review_over: 9}\n",
     "p.yaml: rules[0]: plan_percent paid a percent of a plan price the reporter typed and is no longer accepted; "
     "use fee_percent"),
    ("a negative confirmation threshold", "name: p\napprove_all_confirm_over: -1\nrules:\n  - {id: g, reporter_kinds: ['*'], goodwill: x}\n",
     "p.yaml: approve_all_confirm_over: must be 0 or more, got -1"),
]


@pytest.mark.parametrize("what,text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_policies(tmp_path, monkeypatch, what, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(InputError) as e:
        load_policy("p.yaml")
    lines = [str(p) for p in e.value.problems]
    assert any(line.startswith(expected) for line in lines), lines
