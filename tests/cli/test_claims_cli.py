"""`firebreak claims price` on the shipped examples, and its bad-input errors."""

import csv

import pytest

from tests.conftest import ROOT, run_cli

POLICY = str(ROOT / "examples/kakao-2022-policy.yaml")
LEDGER = str(ROOT / "examples/ledger-2022.yaml")
REPORTS = str(ROOT / "examples/reports-sample.csv")


def test_prices_the_sample_by_the_2022_scheme(tmp_path):
    out = tmp_path / "quotes.csv"
    r = run_cli("claims", "price", REPORTS, "--policy", POLICY, "--ledger", LEDGER, "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in csv.DictReader(out.open())}
    assert rows["1"]["amount"] == "30000" and rows["2"]["amount"] == "50000"
    assert rows["3"]["review"] == "True"                      # above 500,000: individual review
    assert rows["4"]["goodwill"].startswith("emoticon pack")
    assert rows["6"]["flags"] == "outside-outage" and rows["6"]["amount"] == "0"
    assert rows["7"]["flags"] == "duplicate"


@pytest.mark.parametrize("content,expected", [
    ("id,reporter_kind,service\n1,taxi,x\n", "missing columns: window_start"),
    ("reporter_kind,service,window_start,window_end,claimed_amount,contact\ntaxi,x,1,2,5,c\n",
     "line 2: reporter_kind: unknown kind 'taxi' (did you mean 'taxi_driver'?)"),
    ("reporter_kind,service,window_start,window_end,claimed_amount,contact\npaid_user,x,5,2,5,c\n",
     "line 2: window_end must be after window_start"),
    ("reporter_kind,service,window_start,window_end,claimed_amount,contact\npaid_user,x,2022-10-15T15:00:00,2022-10-16T15:00:00,5,c\n",
     "needs a time zone"),
])
def test_bad_report_files_exit_2(tmp_path, content, expected):
    (tmp_path / "r.csv").write_text(content)
    r = run_cli("claims", "price", "r.csv", "--policy", POLICY, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert expected in r.stderr, r.stderr


def test_bad_policy_and_ledger_exit_2(tmp_path):
    (tmp_path / "p.yaml").write_text("name: p\nrules: []\n")
    r = run_cli("claims", "price", REPORTS, "--policy", "p.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "p.yaml: rules: " in r.stderr
    (tmp_path / "l.yaml").write_text("outages:\n  - {service: m, start: 10, end: 5}\n")
    r = run_cli("claims", "price", REPORTS, "--policy", POLICY, "--ledger", "l.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "l.yaml: outages[0]: end must be after start" in r.stderr


def test_price_summary_as_json_with_the_packaged_policy():
    import json

    from tests.conftest import ROOT, run_cli

    r = run_cli("claims", "price", str(ROOT / "examples/reports-sample.csv"), "--ledger",
                str(ROOT / "examples/ledger-2022.yaml"), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["policy"] == "kakao-2022" and doc["reports"] == 7 and doc["total_payout"] > 0
    assert "ships with Firebreak" in r.stderr  # the note is on stderr; stdout is only JSON
