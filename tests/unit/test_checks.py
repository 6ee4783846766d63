"""History checkers, each fed hand-made histories that must fail as well as ones that pass."""

import pytest

from firebreak.drill import checks
from firebreak.drill.workload import Op


def w(key, t0, t1, outcome="ok", site="ansan", primary="10.0.0.2:5432", tl=2):
    return Op("write", key, t0, t1, outcome, site, 201 if outcome == "ok" else 503, primary if outcome == "ok" else "",
              tl if outcome == "ok" else 0)


def r(t, outcome="ok", site="ansan"):
    return Op("read", "1", t, t + 0.01, outcome, site)


def test_a_lost_acknowledged_write_is_found():
    ops = [w("a", 0, 0.1), w("b", 0.2, 0.3), w("c", 0.4, 0.5, outcome="unknown")]
    assert checks.lost_writes(ops, {"a", "b"}) == []
    assert checks.lost_writes(ops, {"a"}) == ["b"]
    # an unknown outcome that did not survive is not a lost acknowledged write; an acked one is
    assert checks.lost_writes(ops, {"b"}) == ["a"]


def test_a_duplicate_created_by_a_retry_is_found():
    assert checks.duplicates({"a": 1, "b": 1}) == []
    assert checks.duplicates({"a": 1, "b": 2}) == ["b"]


def test_write_rto_counts_only_writes_sent_after_the_fault():
    ops = [w("a", 9.0, 10.5), w("b", 10.2, 12.0), w("c", 10.1, 11.0, outcome="unknown"), w("d", 11.5, 11.7)]
    assert abs(checks.write_rto(ops, 10.0) - 1.7) < 1e-9
    assert checks.write_rto([w("a", 9, 9.5)], 10.0) is None


def test_max_write_gap():
    ops = [w("a", 0, 1.0), w("b", 1, 1.5), w("c", 4, 4.5)]
    assert abs(checks.max_write_gap(ops, 0.0, 5.0) - 3.0) < 1e-9


def test_read_failures_per_site():
    ops = [r(1), r(2, "failed"), r(3, "failed", "siheung"), r(4, "ok", "siheung")]
    assert checks.read_failures(ops, ["ansan", "siheung"]) == {"ansan": 1, "siheung": 1}


def test_two_overlapping_primaries_are_split_brain():
    sequential = [w("a", 0, 1, primary="p1", tl=1), w("b", 1, 2, primary="p1", tl=1),
                  w("c", 3, 4, primary="p2", tl=2), w("d", 4, 5, primary="p2", tl=2)]
    assert checks.split_brain(sequential) == []
    overlapping = sequential + [w("e", 4.5, 4.8, primary="p1", tl=1)]
    bad = checks.split_brain(overlapping)
    assert len(bad) == 1 and {bad[0][0].primary, bad[0][1].primary} == {"p1", "p2"}


def test_same_server_new_timeline_is_a_different_primary():
    ops = [w("a", 0, 1, primary="p1", tl=1), w("b", 0.5, 2, primary="p1", tl=2), w("c", 1.5, 3, primary="p1", tl=1)]
    assert checks.split_brain(ops)


def test_ops_actions_per_site():
    ops = [Op("ops", "freeze", 0, 1, "ok", "ansan"), Op("ops", "evacuate", 0, 1, "failed", "ansan"),
           Op("ops", "freeze", 0, 1, "ok", "siheung")]
    assert checks.ops_actions(ops) == {"ansan": {"tried": 2, "ok": 1}, "siheung": {"tried": 1, "ok": 1}}


@pytest.mark.parametrize("acks,expected", [
    # the primary's site cut: nothing acknowledged from the fault until the new primary at +1.5 s
    ([(9.0, 9.9), (9.5, 9.95), (10.1, 11.5), (10.2, 11.52)], 1.5),
    # the synchronous standby's site isolated: one write makes it in the instant before the rules
    # land, then every commit waits 3 s: unavailable for 3 s, not 0.01 s
    ([(9.0, 9.9), (10.005, 10.01), (10.02, 13.0), (10.03, 13.01)], 3.0),
    # an asynchronous replica's site lost: writes never pause
    ([(9.0 + i * 0.05, 9.02 + i * 0.05) for i in range(80)], 0.02),
    # a pause that starts well after the fault (the site's return) is not the fault's
    ([(9.0, 9.9), (10.0, 10.05), (10.05, 10.1), (10.1, 10.15), (10.15, 10.2), (10.2, 10.25), (10.25, 10.3),
      (10.3, 10.35), (10.35, 10.4), (10.4, 10.45), (10.45, 10.5), (10.5, 10.55), (10.55, 10.6), (10.6, 10.65),
      (10.65, 10.7), (10.7, 10.75), (10.75, 10.8), (10.8, 10.85), (10.85, 10.9), (10.9, 10.95), (10.95, 11.0),
      (11.0, 11.05), (11.05, 11.1), (11.1, 15.0)], 0.05),
])
def test_write_unavailability_ends_when_writes_flow_again(acks, expected):
    ops = [w(f"k{i}", inv, done) for i, (inv, done) in enumerate(acks)]
    assert abs(checks.write_rto(ops, 10.0) - expected) < 1e-6


def _rto_by_definition(ops, fault_at, kind="write", until=None):
    """write_rto as first written: every question sorts the whole history (the reference). With
    `until`, only what completed by then counts, and `until` itself ends the last stall."""
    done = sorted(o.complete for o in checks.acked(ops, kind))
    after = [o.complete for o in checks.acked(ops, kind) if o.invoke >= fault_at]
    if until is not None:
        done, after = [d for d in done if d <= until], [c for c in after if c <= until]
    if not after:
        return None
    rto = min(after) - fault_at
    ends = done + ([until] if until is not None else [])
    for k, (a, b) in enumerate(zip(ends, ends[1:])):
        if fault_at <= a <= fault_at + checks.SETTLE and b - a > checks.STALL:
            if until is not None and k == len(ends) - 2:
                return None   # the stall that `until` ends: writes never came back
            rto = max(rto, b - fault_at)
    return rto


def test_writes_that_stall_at_the_fault_and_never_come_back_never_resumed():
    """Patroni alone after its primary's site is cut: one write slips in as the fault lands, then
    nothing for the rest of a 12 s hold (the writers stop at its end)."""
    ops = [w("a", 9.0, 9.9), w("b", 10.001, 10.004)]
    assert checks.write_rto(ops, 10.0) == pytest.approx(0.004)   # what the benchmark reported
    assert checks.write_rto(ops, 10.0, until=22.0) is None
    # writes that flowed on are unchanged by `until`; a first write after it is not within it
    flowing = [w(f"k{i}", 10.0 + i * 0.05, 10.02 + i * 0.05) for i in range(200)]
    assert checks.write_rto(flowing, 10.0, until=22.0) == checks.write_rto(flowing, 10.0) == pytest.approx(0.02)
    assert checks.write_rto([w("late", 10.5, 23.0)], 10.0, until=22.0) is None


def test_the_indexed_acks_answer_every_fault_as_the_definition_does():
    from hypothesis import given, settings, strategies as st

    op = st.tuples(st.floats(0, 20), st.floats(0, 3), st.sampled_from(["ok", "ok", "ok", "unknown"]))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(op, max_size=60), st.lists(st.floats(-1, 22), min_size=1, max_size=6),
           st.none() | st.floats(0, 3))
    def check(raw, faults, watched):
        ops = [Op("write", str(i), t, t + d, outcome, "s") for i, (t, d, outcome) in enumerate(raw)]
        acks = checks.Acks(ops)
        for at in faults:
            assert acks.rto(at) == _rto_by_definition(ops, at)
            if watched is not None:
                assert acks.rto(at, at + watched) == _rto_by_definition(ops, at, until=at + watched)
    check()


def test_the_tail_since_a_fault_answers_as_the_whole_history_does():
    # appended as they complete, two writers racing: completions out of order by a little
    ops = [Op("write", str(i), i * 0.1, i * 0.1 + (0.3 if i % 7 == 0 else 0.02), "ok", "s") for i in range(400)]
    ops.sort(key=lambda o: o.complete)
    ops[100], ops[101] = ops[101], ops[100]
    for at in (0.0, 5.0, 12.34, 39.9, 45.0):
        tail = checks.completed_since(ops, at)
        assert len(tail) < len(ops) or at <= 5.0  # the margin
        assert checks.write_rto(tail, at) == checks.write_rto(ops, at)
