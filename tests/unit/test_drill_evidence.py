"""The evidence a drill keeps of a fault that went over its objective: PostgreSQL's backends by
what they are doing, from their process titles (drill/evidence.py)."""

from firebreak.drill.evidence import backend_kind, describe, summary

TITLES = [
    "postgres: firebreak: logger",
    "postgres: firebreak: io worker 1",
    "postgres: firebreak: checkpointer",
    "postgres: firebreak: walwriter",
    "postgres: firebreak: walsender replicator 10.77.0.13(51234) streaming 0/68E495F0",
    "postgres: firebreak: app claims 10.77.0.11(40001) INSERT waiting for 0/68E49598",
    "postgres: firebreak: app claims 10.77.0.12(40002) INSERT waiting for 0/68E4A000",
    "postgres: firebreak: app claims 10.77.0.12(40003) INSERT waiting",
    "postgres: firebreak: app claims 10.77.0.13(40004) idle in transaction",
    "postgres: firebreak: postgres postgres [local] idle",
]


def test_connections_count_together_by_what_they_do_whatever_their_address():
    assert backend_kind(TITLES[0]) is None and backend_kind(TITLES[1]) is None
    assert backend_kind(TITLES[5]) == backend_kind(TITLES[6]) == "app claims INSERT waiting for LSN"
    assert backend_kind(TITLES[7]) == "app claims INSERT waiting"
    assert backend_kind(TITLES[9]) == "postgres postgres idle"
    assert backend_kind("postgres: app claims ::1(5) idle") == "app claims idle"  # no cluster name, IPv6


def test_summary_and_its_line():
    s = summary({"ansan/pgdata": TITLES, "pangyo/pgdata": TITLES[:3]}, top=2)
    assert s["ansan/pgdata"] == [("app claims INSERT waiting for LSN", 2), ("walsender replicator streaming LSN", 1),
                                 ("other", 3)]
    assert s["pangyo/pgdata"] == []
    assert describe(s) == ("ansan/pgdata: 6 connections: 2 app claims INSERT waiting for LSN, "
                           "1 walsender replicator streaming LSN, 3 other; pangyo/pgdata: 0 connections")


def test_the_drill_keeps_it_as_an_event_and_a_failure_to_read_never_fails_the_drill(monkeypatch):
    from firebreak.drill import harness

    events, said = [], []
    monkeypatch.setattr(harness.lab, "postgres_backends", lambda: {"ansan/pgdata": TITLES})
    harness._evidence(events, said.append, "writes did not resume")
    (e,) = events
    assert e.kind == "evidence" and "ansan/pgdata: 6 connections: 2 app claims INSERT waiting for LSN" in e.detail

    def unreadable():
        raise PermissionError("/proc")
    monkeypatch.setattr(harness.lab, "postgres_backends", unreadable)
    harness._evidence(events, said.append, "writes did not resume")
    assert "could not read the servers' processes" in events[-1].detail and len(said) == 2
