"""`firebreak claims postmortem` on a ledger file with the agents' words, a drill report and a
credit batch; and its bad-input errors (exit 2, the file and the reason, no traceback)."""

import json

import pytest

from tests.conftest import ROOT, run_cli

T = 1_700_000_000.0
LEDGER = f"""outages:
  - {{id: /firebreak/ledger/{T:.3f}-pangyo, service: site pangyo, site: pangyo, start: {T}, end: {T + 600},
      kind: site-down, detail: "unreachable from ansan, siheung",
      failover: "released leader key of users-db/pangyo-users at {T + 1.2:.3f}", recorded_by: ansan, source: agent}}
  - {{service: users-db, start: {T}, end: {T + 1.3}, kind: service-outage, cause: "its primary's site pangyo is lost",
      recorded_by: ansan, source: agent}}
  - {{service: mail, start: {T - 86400}, end: {T - 86400 + 60}, site: ansan}}
"""


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "ledger.yaml").write_text(LEDGER)
    drill = tmp_path / "drills" / "20231114-power-cut"
    drill.mkdir(parents=True)
    (drill / "report.json").write_text(json.dumps({
        "verdict": "pass", "failures": [], "scenario": {"name": "power-cut pangyo"}, "started": T - 2,
        "duration_s": 12.0, "write_rto_s": 1.4, "acked_lost": 0,
        "faults": [{"fault": "power-cut", "site": "pangyo", "at_s": 2.0, "healed_at_s": 9.0, "write_rto_s": 1.4,
                    "start_wall": T, "end_wall": T + 7}]}))
    (tmp_path / "drills" / "latest").symlink_to(drill)  # as `firebreak drill` leaves it: read once, not twice
    credits = tmp_path / "credits"
    credits.mkdir()
    (credits / "credit-20231114T221400Z-abcdef.csv").write_text(
        f"account,amount,goodwill,incident,rule\nA1,1000,,{int(T)},paid-user\nA2,2500,,{int(T)},paid-user\n")
    return tmp_path


def test_a_report_for_one_incident_from_the_ledger_drills_and_credits(inputs):
    r = run_cli("claims", "postmortem", "--ledger", "ledger.yaml", "--drill-reports", "drills", "--credits",
                "credits", "--incident", f"incident-{int(T)}", "--out", "pm.md", cwd=inputs)
    assert r.returncode == 0, r.stderr
    text = (inputs / "pm.md").read_text()
    assert text.startswith("# Post-incident report: Incident 1700000000: users-db, 2023-11-15 07:13 KST")
    assert "| Root cause (as recorded) | site pangyo lost: unreachable from ansan, siheung;" in text
    assert "| Accounts credited | 2, 3,500 KRW in total |" in text
    assert ("| 2023-11-15 07:13:21.200 | +1.20 s | failover of users-db: released the leader key of pangyo-users, so "
            "a synchronous standby promotes |  | ledger |") in text
    assert "| users-db | 2023-11-15 07:13:20.000 | 2023-11-15 07:13:21.300 | 1.30 s | its primary's site" in text
    assert text.count("### Drill power-cut pangyo: pass") == 1
    assert "mail" not in text  # another incident


def test_without_incident_every_one_to_stdout(inputs):
    r = run_cli("claims", "postmortem", "--ledger", "ledger.yaml", cwd=inputs)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# Post-incident report: 2 incidents, 2023-11-14 to 2023-11-15")
    assert "## Incident 1699913600: mail" in r.stdout and "| Accounts credited | not known" in r.stdout


def test_the_shipped_ledger_reads():
    r = run_cli("claims", "postmortem", "--ledger", str(ROOT / "examples/ledger-2022.yaml"), "--since",
                "2022-10-15T00:00:00+09:00", "--until", "2022-10-17T00:00:00+09:00")
    assert r.returncode == 0, r.stderr
    assert "| mail | 2022-10-15 15:19:00.000 | 2022-10-16 21:00:00.000 | 29 h 41 min | site pangyo |" in r.stdout


@pytest.mark.parametrize("args,setup,expected", [
    (["--incident", "123"], None, "--incident: no incident 123 in the ledger (ledger file ledger.yaml); the latest "
                                  "there: 1699913600, 1700000000"),
    (["--incident", "yesterday"], None, "--incident: 'yesterday' is not an incident id"),
    (["--incident", "1", "--since", "0"], None, "give one incident or a time range"),
    (["--since", "2023-11-14T00:00:00"], None, "--since: '2023-11-14T00:00:00': needs a time zone"),
    (["--drill-reports", "nowhere"], None, "--drill-reports: nowhere does not exist"),
    (["--drill-reports", "empty"], lambda d: (d / "empty").mkdir(), "--drill-reports: no report.json under empty"),
    (["--drill-reports", "bad.json"], lambda d: (d / "bad.json").write_text("{"), "bad.json: not JSON"),
    (["--drill-reports", "r.json"], lambda d: (d / "r.json").write_text('{"started": 1, "scenario": {"name": "x"}, '
                                                                         '"faults": [{"fault": "power-cut", "at_s": 1, '
                                                                         '"healed_at_s": 2}]}'),
     "r.json: faults[0].site: missing"),
    (["--credits", "nope"], None, "--credits: nope is not a directory of credit batches"),
    (["--out", "no/such/dir/pm.md"], None, "--out: directory no/such/dir does not exist"),
])
def test_bad_input_exits_2_naming_what_and_why(inputs, args, setup, expected):
    if setup:
        setup(inputs)
    r = run_cli("claims", "postmortem", "--ledger", "ledger.yaml", *args, cwd=inputs)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert expected in r.stderr, r.stderr


def test_a_bad_ledger_file_exits_2_naming_the_entry(inputs):
    (inputs / "l.yaml").write_text("outages:\n  - {service: m, start: 10, end: 5}\n")
    r = run_cli("claims", "postmortem", "--ledger", "l.yaml", cwd=inputs)
    assert r.returncode == 2 and "l.yaml: outages[0]: end must be after start" in r.stderr


def test_without_a_ledger_file_it_reads_etcd_and_says_what_to_do_when_it_cannot(tmp_path):
    r = run_cli("claims", "postmortem", "--etcd", "http://127.0.0.1:9", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "give --ledger FILE" in r.stderr, r.stderr


def test_the_same_report_as_json_for_programs(inputs):
    r = run_cli("claims", "postmortem", "--ledger", "ledger.yaml", "--incident", str(int(T)), "--format", "json",
                cwd=inputs)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    [section] = doc["sections"]
    assert section["incident"]["id"] == int(T) and section["failed"][0]["subject"] == "site pangyo"
    assert [t["what"].split(":")[0] for t in section["timeline"]][:2] == [
        "site pangyo lost (agreed by the surviving sites' detectors; the coordinator dates it from when the site "
        "fell silent)", "users-db out"]
