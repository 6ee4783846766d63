"""Credit without a claim, as tables: accounts and measured outages in, lines out; what earlier
batches paid is never paid again; the ledger reader believes neither drills nor stale open entries."""

import polars as pl
import pytest

from firebreak.claims.accounts import check_accounts
from firebreak.claims.credit import already_credited, credited_for, owed
from firebreak.claims.ledger import Outage, incidents, read_entries
from firebreak.claims.policy import Policy

H = 3600.0
T0 = 1_665_814_740.0   # 2022-10-15 15:19 KST
POLICY = Policy.model_validate({"name": "t", "billing_period_days": 30, "services": ["messenger", "mail", "taxi"],
                                "rules": [
    {"id": "shops", "reporter_kinds": ["taxi_driver"], "tiers": [{"up_to": 10, "pay": 1}, {"review": True}],
     "cap": 1, "review_over": 1},                                      # needs a report: credit skips it
    {"id": "sales", "reporter_kinds": ["taxi_driver"], "sales_percent": 50, "cap": 100_000, "review_over": 60_000},
    {"id": "fee", "reporter_kinds": ["paid_user"], "fee_percent": 100, "cap": 50_000, "review_over": 20_000},
    {"id": "gift", "reporter_kinds": ["free_user"], "goodwill": "stickers"},
]})


def accounts(*rows):
    return check_accounts(pl.DataFrame(
        [dict(zip(("account", "kind", "monthly_fee", "services", "sales_per_hour"), r)) for r in rows],
        schema={c: pl.String for c in ("account", "kind", "monthly_fee", "services", "sales_per_hour")}),
        POLICY, "mem")


ACCOUNTS = accounts(("paid", "paid_user", "7200", "messenger;mail", ""),
                    ("rich", "paid_user", "3000000", "messenger", ""),
                    ("free", "free_user", "", "messenger", ""),
                    ("taxi", "taxi_driver", "", "taxi", "10000"),
                    ("busy", "taxi_driver", "", "taxi", "200000"),
                    ("idle", "free_user", "", "mail", ""))


def lines(o):
    return {r["account"]: (r["amount"], r["goodwill"], r["rule"]) for r in o.lines.iter_rows(named=True)}


@pytest.mark.parametrize("outages,expected,held", [
    # 72 h of messenger: the paid user gets 72/720 of 7,200; the free user the item; no taxi outage
    ([Outage("messenger", T0, T0 + 72 * H)],
     {"paid": (720, None, "fee"), "free": (0, "stickers", "gift")}, {"rich": 50_000}),   # capped, then held
    # messenger and mail out at the same time: the paid user (both) is paid each hour once
    ([Outage("messenger", T0, T0 + 36 * H), Outage("mail", T0 + 24 * H, T0 + 72 * H)],
     {"paid": (720, None, "fee"), "free": (0, "stickers", "gift"), "idle": (0, "stickers", "gift")},
     {"rich": 50_000}),
    # taxi: partners by declared sales (50%), the tiers rule needs a report and is skipped
    ([Outage("taxi", T0, T0 + 10 * H)], {"taxi": (50_000, None, "sales")}, {"busy": 100_000}),   # capped, then held
    # every service (a site's entry with no service): everyone
    ([Outage("*", T0, T0 + 7.2 * H)],
     {"paid": (72, None, "fee"), "free": (0, "stickers", "gift"), "idle": (0, "stickers", "gift"),
      "taxi": (36_000, None, "sales")}, {"busy": 100_000, "rich": 30_000}),   # 3,000,000 × 7.2/720 > 20,000
])
def test_who_is_credited_and_how_much(outages, expected, held):
    o = owed(POLICY, ACCOUNTS, incidents(outages), None)
    assert lines(o) == expected
    assert {r["account"]: r["amount"] for r in o.held.iter_rows(named=True)} == held


def test_a_rerun_pays_nothing_and_a_grown_outage_pays_only_the_difference():
    first = owed(POLICY, ACCOUNTS, incidents([Outage("messenger", T0, T0 + 36 * H, open=True)]), None)
    assert lines(first)["paid"] == (360, None, "fee")
    paid = first.lines
    again = owed(POLICY, ACCOUNTS, incidents([Outage("messenger", T0, T0 + 36 * H)]), paid)
    assert again.lines.height == 0 and again.already_paid == 360
    grown = owed(POLICY, ACCOUNTS, incidents([Outage("messenger", T0, T0 + 72 * H)]), paid)
    assert lines(grown) == {"paid": (360, None, "fee")}          # 720 in full, 360 already paid; no 2nd gift
    assert grown.entitled == 720 + 50_000 and grown.already_paid == 360   # + the rich account's held line
    both = pl.concat([paid, grown.lines])
    assert owed(POLICY, ACCOUNTS, incidents([Outage("messenger", T0, T0 + 72 * H)]), both).lines.height == 0


def test_an_incident_that_grows_into_a_later_one_counts_what_the_later_one_paid():
    later = [Outage("mail", T0 + 48 * H, T0 + 72 * H)]
    paid = owed(POLICY, ACCOUNTS, incidents(later), None).lines        # the paid user: 24 h = 240
    assert lines(owed(POLICY, ACCOUNTS, incidents(later), None))["paid"][0] == 240
    merged = later + [Outage("messenger", T0, T0 + 50 * H)]            # now one incident from T0 to T0+72h
    o = owed(POLICY, ACCOUNTS, incidents(merged), paid)
    assert lines(o)["paid"] == (720 - 240, None, "fee")
    assert "idle" not in lines(o)                                       # its goodwill came with the later one


def test_two_separate_incidents_are_credited_separately():
    o = owed(POLICY, ACCOUNTS, incidents([Outage("messenger", T0, T0 + 7.2 * H),
                                          Outage("messenger", T0 + 30 * 24 * H, T0 + 30 * 24 * H + 7.2 * H)]), None)
    free = o.lines.filter(pl.col("account") == "free")
    assert free["goodwill"].to_list() == ["stickers", "stickers"] and free["incident"].n_unique() == 2


def test_the_ledger_reader_leaves_out_drills_and_flags_stale_open_entries():
    now = T0 + 30 * H
    read = read_entries([
        ("/firebreak/ledger/drill-1665814740.000-ansan", {"site": "ansan", "start": T0, "end": T0 + H,
                                                          "source": "drill", "kind": "power"}),
        ("/firebreak/ledger/1665814740.000-ansan", {"site": "ansan", "start": T0, "end": None, "source": "agent"}),
        ("/firebreak/ledger/1665900000.000-svc-mail", {"service": "mail", "start": now - 2 * H, "end": None,
                                                       "kind": "service-outage"}),
        ("/firebreak/ledger/1665800000.000-svc-taxi", {"service": "taxi", "start": T0 - 2 * H, "end": T0 - H}),
        ("/firebreak/ledger/bad", {"service": "taxi", "start": "soon"}),
    ], now, max_open_hours=24)
    assert read.drills == 1
    assert [(o.service, o.start, o.end, o.open) for o in read.outages] == [
        ("mail", now - 2 * H, now, True), ("taxi", T0 - 2 * H, T0 - H, False)]
    assert len(read.flagged) == 2
    assert "open since 2022-10-15T06:19:00Z, longer than max_open_hours (24 h): not believed" in read.flagged[0]
    assert "no readable start/end" in read.flagged[1]
    assert "1 drill entry left out" in read.notes()[0]


def test_reports_from_accounts_already_credited_for_that_outage():
    paid = owed(POLICY, ACCOUNTS, incidents([Outage("messenger", T0, T0 + 72 * H)]), None).lines
    paid = paid.with_columns(batch=pl.lit("credit-x"))
    incs = {int(T0): (T0, T0 + 72 * H, {"messenger"})}
    assert credited_for(paid, incs, "paid", "messenger", T0 + H, T0 + 2 * H).amount == 720
    assert not credited_for(paid, incs, "paid", "mail", T0 + H, T0 + 2 * H)           # another service
    assert not credited_for(paid, incs, "paid", "messenger", T0 + 80 * H, T0 + 90 * H)  # another time
    assert credited_for(paid, incs, "free", "messenger", T0, T0 + H).goodwill
    reports = pl.DataFrame({"i": [0, 1, 2], "account": ["paid", None, "free"], "service": ["messenger"] * 3,
                            "start": [T0 + H] * 3, "end": [T0 + 2 * H] * 3})
    got = {r["i"]: (r["credited"], r["credited_goodwill"], r["batches"])
           for r in already_credited(paid, incs, reports).iter_rows(named=True)}
    assert got == {0: (720, False, "credit-x"), 2: (0, True, "credit-x")}
