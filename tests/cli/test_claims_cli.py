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


ACCOUNTS = str(ROOT / "examples/accounts-sample.csv")


def _credit(out, *extra, cwd=None):
    return run_cli("claims", "credit", "--policy", POLICY, "--accounts", ACCOUNTS, "--ledger", LEDGER,
                   "--out", str(out), "--format", "json", *extra, cwd=cwd)


def test_credit_pays_from_the_ledger_and_a_rerun_pays_nothing_more(tmp_path):
    import json

    out = tmp_path / "batches"
    r = _credit(out)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    rows = {row["account"]: row for row in csv.DictReader((out / f"{first['batch']}.csv").open())}
    assert rows["u-1002"]["amount"] == "4243"            # 300,000 × 10.18 h / 720 h: the fee on file, prorated
    assert rows["u-1003"]["goodwill"].startswith("emoticon pack") and rows["u-1003"]["amount"] == "0"
    assert rows["p-2001"]["amount"] == "210300"          # 18,000/h declared × 11.68 h (taxi or maps out)
    assert "u-1005" not in rows                          # uses only a service that was not out
    held = {row["account"] for row in csv.DictReader((out / f"{first['batch']}.held.csv").open())}
    assert held == {"p-2003"}                            # above review_over: a person looks, not paid
    assert first["totals"]["amount"] == sum(int(r["amount"]) for r in rows.values())
    import hashlib
    for kind, name in (("csv", ".csv"), ("parquet", ".parquet"), ("held", ".held.csv")):   # the hashes are the files'
        assert first["files"][kind]["sha256"] == hashlib.sha256((out / f"{first['batch']}{name}").read_bytes()).hexdigest()
    assert first["accounts"]["sha256"] == hashlib.sha256(open(ACCOUNTS, "rb").read()).hexdigest()
    assert (out / f"{first['batch']}.parquet").is_file()

    r = _credit(out)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["batch"] != first["batch"] and again["totals"]["amount"] == 0 and again["totals"]["lines"] == 0
    assert again["totals"]["already_paid"] == first["totals"]["amount"]
    assert [b["batch"] for b in again["earlier_batches"]] == [first["batch"]]


def test_credit_refuses_a_bad_accounts_row_and_writes_nothing(tmp_path):
    (tmp_path / "a.csv").write_text("account,kind,monthly_fee,services,sales_per_hour\n"
                                    "u-1,paid_user,3900,messenger,\nu-2,paid_user,,messenger,\n")
    r = run_cli("claims", "credit", "--policy", POLICY, "--accounts", "a.csv", "--ledger", LEDGER, "--out", "b",
                cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "a.csv: line 3: monthly_fee: empty, but rule 'paid-user'" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_a_report_from_an_account_already_credited_says_so_and_pays_only_the_rest(tmp_path):
    out = tmp_path / "batches"
    assert _credit(out).returncode == 0
    (tmp_path / "r.csv").write_text(
        "id,account,reporter_kind,service,window_start,window_end,claimed_amount,contact,plan_price\n"
        "1,u-1002,paid_user,messenger,2022-10-15T15:30:00+09:00,2022-10-15T20:00:00+09:00,0,a@example.org,10000000\n"
        "2,u-1003,free_user,messenger,2022-10-15T15:30:00+09:00,2022-10-15T20:00:00+09:00,0,b@example.org,0\n"
        "3,u-1002,paid_user,messenger,2022-10-15T15:31:00+09:00,2022-10-15T20:05:00+09:00,0,c@example.org,0\n")
    r = run_cli("claims", "price", "r.csv", "--policy", POLICY, "--ledger", LEDGER, "--accounts", ACCOUNTS,
                "--credits", str(out), "-o", "q.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in csv.DictReader((tmp_path / "q.csv").open())}
    # a typed plan of 10,000,000 is ignored; the fee on file for 4.5 h (1,875) was already credited (4,243)
    assert rows["1"]["amount"] == "0" and rows["1"]["flags"] == "already-credited"
    assert rows["2"]["goodwill"] == "" and rows["2"]["flags"] == "already-credited"
    assert rows["3"]["flags"] == "duplicate|already-credited"     # another contact, same account and window


def test_credit_without_a_ledger_file_or_a_lab_says_what_to_do(tmp_path):
    r = run_cli("claims", "credit", "--policy", POLICY, "--accounts", ACCOUNTS, "--out", "b",
                "--etcd", "http://127.0.0.1:9", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "give --ledger FILE" in r.stderr, r.stderr


from tests.web.conftest import claims_db, pg  # noqa: E402,F401  (a real PostgreSQL, as the web tests use)


def test_accounts_load_replaces_the_table_all_or_nothing(tmp_path, claims_db):  # noqa: F811
    import psycopg

    r = run_cli("claims", "accounts", "load", ACCOUNTS, "--dsn", claims_db)
    assert r.returncode == 0, r.stderr
    assert "loaded 8 accounts" in r.stdout
    (tmp_path / "bad.csv").write_text("account,kind,monthly_fee,services,sales_per_hour\n"
                                      "n-1,free_user,,messenger,\nn-2,taxi_driver,,taxi,12x\n")
    r = run_cli("claims", "accounts", "load", "bad.csv", "--dsn", claims_db, cwd=tmp_path)
    assert r.returncode == 2 and "bad.csv: line 3: sales_per_hour: expected a whole number" in r.stderr, r.stderr
    with psycopg.connect(claims_db) as conn:
        rows = conn.execute("SELECT account, kind, monthly_fee, services, sales_per_hour FROM accounts "
                            "ORDER BY account").fetchall()
        audit = conn.execute("SELECT detail FROM review_audit WHERE action = 'accounts-load'").fetchall()
    assert len(rows) == 8                                           # the bad file changed nothing
    assert ("u-1001", "paid_user", 3900, ["messenger", "mail"], None) in rows
    assert audit and audit[-1][0]["accounts"] == 8 and len(audit[-1][0]["sha256"]) == 64
