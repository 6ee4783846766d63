"""The post-incident report without I/O: ledger entries (as the coordinator writes them), drill
reports and credit totals in; what failed, the timeline, what each service saw and the Markdown out."""

import pytest

from firebreak.claims.postmortem import DrillReport, cell, duration, markdown, offset, postmortem
from firebreak.errors import InputError

T = 1_700_000_000.0          # an incident's start
NOW = T + 3600


def site_down(site, start, end, detail="", failover="", service=None):
    e = {"site": site, "start": start, "end": end, "kind": "site-down", "detail": detail, "failover": failover,
         "recorded_by": "ansan", "source": "agent"}
    if service:
        e["service"] = service           # an estate names the site as the entry's "service"
    return (f"/firebreak/ledger/{start:.3f}-{site}", e)


def service_out(service, start, end, cause):
    return (f"/firebreak/ledger/{start:.3f}-svc-{service}",
            {"service": service, "start": start, "end": end, "cause": cause, "kind": "service-outage",
             "source": "agent", "recorded_by": "ansan"})


def drill_entry(site, start, end):
    return (f"/firebreak/ledger/drill-{start:.3f}-{site}",
            {"site": site, "start": start, "end": end, "kind": "power-cut", "source": "drill",
             "scenario": "power-cut pangyo", "verdict": "pass"})


def drill_doc(start, **extra):
    doc = {"verdict": "pass", "failures": [], "scenario": {"name": "power-cut pangyo"}, "started": start - 2,
           "duration_s": 12.0, "acked_writes": 900, "acked_lost": 0, "duplicates": 0, "split_brain": False,
           "write_rto_s": 1.4, "max_write_gap_s": 1.5, "power_cut_mode": {"pangyo": "link-down"},
           "faults": [{"fault": "power-cut", "site": "pangyo", "at_s": 2.0, "healed_at_s": 9.0, "write_rto_s": 1.4,
                       "start_wall": start, "end_wall": start + 7}],
           "events": [{"t": 2.0, "wall": start, "kind": "fault", "site": "pangyo", "detail": "power cut, address link-down"},
                      {"t": 9.0, "wall": start + 7, "kind": "heal", "site": "pangyo", "detail": "healed: power-cut"}],
           "primaries": [{"primary": "10.77.0.11:5432", "timeline": 1, "first_ack_s": 0.1, "last_ack_s": 1.9, "acks": 400},
                         {"primary": "10.77.0.12:5432", "timeline": 2, "first_ack_s": 3.4, "last_ack_s": 12.0,
                          "acks": 500}],
           "objectives": [{"objective": "write_unavailability_s", "met": True, "reason": "1.4 s, within 3 s"}]}
    doc.update(extra)
    return doc


ESTATE = [site_down("pangyo", T, T + 600, "unreachable from ansan, siheung",
                    f"released leader key of users-db/pangyo-users at {T + 1.2:.3f}", service="site pangyo"),
          service_out("users-db", T, T + 1.3, "its primary's site pangyo is lost"),
          service_out("login", T, T + 1.4, "users-db is out: its primary's site pangyo is lost")]


def pm(entries, **kw):
    return postmortem(entries, NOW, 24.0, source="test", **kw)


# -- which incidents ------------------------------------------------------------------------------

EARLY = [service_out("mail", T - 86400, T - 86400 + 60, "site ansan")]


@pytest.mark.parametrize("ask,titles", [
    ({}, ["Incident 1699913600: mail", "Incident 1700000000: login, users-db"]),
    ({"incident": int(T)}, ["Incident 1700000000: login, users-db"]),
    ({"since": T - 10}, ["Incident 1700000000: login, users-db"]),
    ({"until": T - 10}, ["Incident 1699913600: mail"]),
    ({"since": T + 601}, []),
])
def test_one_incident_or_a_time_range(ask, titles):
    assert [s.title for s in pm(ESTATE + EARLY, **ask).sections] == titles


def test_an_incident_the_ledger_does_not_hold_says_which_it_does():
    with pytest.raises(InputError) as e:
        pm(ESTATE + EARLY, incident=123)
    assert "--incident: no incident 123 in the ledger (test); the latest there: 1699913600, 1700000000" in str(e.value)


# -- what failed, the timeline, what each service saw -------------------------------------------------

def test_what_failed_is_each_entry_with_its_recorded_cause():
    s = pm(ESTATE).sections[0]
    assert [(f.subject, f.kind, f.end - f.start, f.cause, f.recorded_by) for f in s.failed] == [
        ("site pangyo", "site lost", 600, "unreachable from ansan, siheung", "ansan"),
        ("users-db", "service-outage", pytest.approx(1.3), "its primary's site pangyo is lost", "ansan"),
        ("login", "service-outage", pytest.approx(1.4), "users-db is out: its primary's site pangyo is lost", "ansan")]
    assert s.causes[0] == "site pangyo lost: unreachable from ansan, siheung"  # the site first: the rest follow from it


def test_the_timeline_puts_each_decision_at_its_time():
    steps = [(round(t.at - T, 3), t.what.split(" (")[0].split(":")[0]) for t in pm(ESTATE).sections[0].timeline]
    assert steps == [(0, "site pangyo lost"), (0, "users-db out"), (0, "login out"),
                     (1.2, "failover of users-db"), (1.3, "users-db back"), (1.4, "login back"),
                     (600, "site pangyo back"), (600, "incident resolved")]


@pytest.mark.parametrize("failover,expected", [
    (f"released leader key of claims/pangyo at {T + 0.9:.3f}", [(0.9, "failover of claims: released the leader key "
                                                                      "of pangyo, so a synchronous standby promotes")]),
    ("moved by hand", [(0.0, "failover during site pangyo's loss (time not recorded)")]),
    ("", []),
])
def test_a_failover_is_timed_when_the_agent_recorded_when(failover, expected):
    steps = pm([site_down("pangyo", T, T + 60, failover=failover)]).sections[0].timeline
    assert [(round(t.at - T, 3), t.what) for t in steps if t.what.startswith("failover")] == expected


@pytest.mark.parametrize("entries,seen", [
    # an estate: the site's entry is the site's, each service has its own
    (ESTATE, [("login", 1.4, False), ("users-db", 1.3, False)]),
    # one service, no per-service entries: the site's entry stands for every service, as claims read it
    ([site_down("pangyo", T, T + 90)], [("every service", 90, False)]),
    # still going on when the report is made: until now, and said so
    ([service_out("maps", T, None, "x")], [("maps", 3600, True)]),
    # two windows of one service in one incident (another service bridges them)
    ([service_out("maps", T, T + 10, "a"), service_out("taxi", T + 5, T + 30, "b"),
      service_out("maps", T + 20, T + 25, "a")], [("maps", 10, False), ("maps", 5, False), ("taxi", 25, False)]),
])
def test_what_each_service_saw(entries, seen):
    got = [(v.service, b - a, still) for v in pm(entries).sections[0].seen for a, b, still in v.windows]
    assert got == [(s, pytest.approx(d), o) for s, d, o in seen]


# -- drills --------------------------------------------------------------------------------------

def test_a_drill_report_joins_the_incident_it_overlaps():
    d = DrillReport.from_doc("r/report.json", drill_doc(T + 0.2))
    s = pm(ESTATE + [drill_entry("pangyo", T + 0.2, T + 7.2)], drills=[d]).sections
    assert len(s) == 1 and s[0].drills == (d,)
    kinds = [f.kind for f in s[0].failed]
    assert kinds.count("drill: power-cut") == 1  # the drill's ledger entry says what its report says: once
    whats = [t.what for t in s[0].timeline if t.source.startswith("drill")]
    assert whats == ["primary 10.77.0.11:5432 (timeline 1) acknowledges writes", "fault injected at site pangyo",
                     "writes acknowledged again", "primary 10.77.0.12:5432 (timeline 2) acknowledges writes",
                     "fault healed at site pangyo", "drill verdict: pass"]
    assert "drill power-cut pangyo: power-cut of site pangyo (injected)" in s[0].causes


def test_a_drill_the_ledger_recorded_nothing_for_stands_alone_and_is_no_outage():
    d = DrillReport.from_doc("r/report.json", drill_doc(T + 7200))
    sections = pm(ESTATE, drills=[d]).sections
    assert [s.incident is None for s in sections] == [False, True]
    text = markdown(pm(ESTATE, drills=[d]))
    assert "## Drill power-cut pangyo (the ledger records no outage during it)" in text
    assert "none: a drill is not compensated" in text and "# Post-incident report: 1 incident and 1 drill" in text


def test_without_its_report_a_drills_ledger_entry_is_still_shown_as_a_rehearsal():
    s = pm(ESTATE + [drill_entry("pangyo", T + 0.2, T + 7.2)]).sections[0]
    rows = [f for f in s.failed if f.kind.startswith("drill")]
    assert len(rows) == 1 and "a rehearsal, not an outage" in rows[0].cause
    assert [t.what for t in s.timeline if t.source == "ledger (drill entry)"] == [
        "drill fault injected: power-cut of site pangyo", "drill fault healed: site pangyo"]
    assert pm(ESTATE + [drill_entry("pangyo", T + 0.2, T + 7.2)]).notes == (
        "1 drill entry left out (a drill is not an outage)",)


def test_older_drill_reports_without_wall_times_use_start_plus_offsets():
    doc = drill_doc(T)
    for f in doc["faults"]:
        del f["start_wall"], f["end_wall"]
    d = DrillReport.from_doc("old.json", doc)
    assert (d.faults[0].start, d.faults[0].end) == (T, T + 7)


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.pop("started"), "r.json: started: missing; is this a `firebreak drill` report.json?"),
    (lambda d: d.update(started="yesterday"), "r.json: started: expected a number, got 'yesterday'"),
    (lambda d: d.update(faults={}), "r.json: faults: expected a list"),
    (lambda d: d["faults"][0].pop("site"), "r.json: faults[0].site: missing"),
    (lambda d: d["scenario"].pop("name"), "r.json: scenario.name: missing"),
    (lambda d: d["events"][1].update(wall=None), "r.json: events[1].wall: expected a number, got None"),
    (lambda d: d["primaries"][0].update(first_ack_s=True), "r.json: primaries[0].first_ack_s: expected a number"),
])
def test_a_bad_drill_report_names_the_file_and_the_field(change, expected):
    doc = drill_doc(T)
    change(doc)
    with pytest.raises(InputError) as e:
        DrillReport.from_doc("r.json", doc)
    assert expected in str(e.value)


def test_not_a_report_at_all():
    with pytest.raises(InputError, match="r.json: expected a JSON object"):
        DrillReport.from_doc("r.json", [1, 2])


# -- the Markdown -----------------------------------------------------------------------------------

@pytest.mark.parametrize("credits,line", [
    (None, "| Accounts credited | not known: no credit batches were given |"),
    ({}, "| Accounts credited | none in the credit batches |"),
    ({int(T): (1234, 5_678_000)}, "| Accounts credited | 1,234, 5,678,000 KRW in total |"),
])
def test_what_was_paid(credits, line):
    assert line in markdown(pm(ESTATE, credits=credits, currency="KRW"))


def test_the_report_reads_in_order_and_the_agents_words_cannot_break_it():
    entries = [site_down("pangyo", T, T + 60, "a | b\n## not a heading <script>")]
    text = markdown(pm(entries + [("/firebreak/ledger/bad", "not json"),
                                  service_out("maps", T - 30 * 3600, None, "stuck")]))
    order = [text.index(h) for h in ("# Post-incident report: Incident 1700000000: every service",
                                     "### What failed", "### What the control plane decided, and when",
                                     "### What each service saw", "## Notes on the ledger")]
    assert order == sorted(order)
    assert "a \\| b ## not a heading &lt;script>" in text and "\n## not a heading" not in text
    assert "/firebreak/ledger/bad: not a JSON object; ignored" in text
    assert "maps open since" in text and "not believed" in text  # flagged, not shown as an outage


def test_nothing_asked_for_is_said_plainly():
    assert "No incident in the ledger matches what was asked." in markdown(pm(ESTATE, since=NOW + 1))


@pytest.mark.parametrize("seconds,text", [
    (1.234, "1.23 s"), (59.999, "60.00 s"), (61, "1 min 1 s"), (3599, "59 min 59 s"), (3600, "1 h 0 min"),
    (36_660, "10 h 11 min"), (106_860, "29 h 41 min"),
])
def test_durations(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("seconds,text", [(0, "+0.00 s"), (-0.001, "+0.00 s"), (-2.03, "-2.03 s"), (1.5, "+1.50 s")])
def test_offsets(seconds, text):
    assert offset(seconds) == text


@pytest.mark.parametrize("raw,out", [("a|b", "a\\|b"), ("x\ny", "x y"), ("<b>", "&lt;b>"), ("c:\\d", "c:\\\\d")])
def test_cells(raw, out):
    assert cell(raw) == out
