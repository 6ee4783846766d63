"""etcd kept bounded: storage warnings, which member to defragment, and retention. Tables."""

import pytest

from firebreak.control import maintenance as m
from firebreak.control.keys import Keys, prefix_end

MiB = 2**20
QUOTA = 2048 * MiB


def mem(name, size_mib, in_use_mib):
    return m.MemberStorage(name, size_mib * MiB, in_use_mib * MiB)


def test_a_healthy_cluster_has_nothing_to_say():
    h = m.storage_health([mem("a", 40, 30), mem("b", 40, 30)], [], QUOTA)
    assert h.ok and h.worst_fraction == pytest.approx(40 / 2048, abs=1e-4)


@pytest.mark.parametrize("alarms,needle", [
    ([("a", "NOSPACE")], "NOSPACE on a: etcd refuses writes"),
    ([("b", "CORRUPT")], "CORRUPT on b: a member's data differs"),
])
def test_alarms_become_warnings_that_say_what_to_do(alarms, needle):
    h = m.storage_health([mem("a", 40, 30)], alarms, QUOTA)
    assert not h.ok and any(w.startswith("etcd alarm " + needle) for w in h.warnings)


def test_a_member_past_half_its_quota_is_a_warning():
    h = m.storage_health([mem("a", 1100, 900), mem("b", 100, 90)], [], QUOTA)
    assert len(h.warnings) == 1 and "etcd member a uses 1100 MiB, 54% of its 2048 MiB quota" in h.warnings[0]


@pytest.mark.parametrize("members,suspects,last,now,expected", [
    ([mem("a", 400, 100), mem("b", 300, 100)], set(), 0, 10_000, "a"),          # most free space first
    ([mem("a", 400, 100), mem("b", 300, 100)], {"c"}, 0, 10_000, None),         # a site in doubt: none at all
    ([mem("a", 400, 100)], set(), 9_900, 10_000, None),                         # one per DEFRAG_EVERY_S
    ([mem("a", 100, 60)], set(), 0, 10_000, None),                              # not worth it: little free
    ([mem("a", 60, 1)], set(), 0, 10_000, None),                                # under the 64 MiB floor
])
def test_defrag_target(members, suspects, last, now, expected):
    assert m.defrag_target(members, suspects, last, now) == expected


def test_audit_keeps_the_newest():
    keys = Keys()
    names = [keys.audit_entry(1000.0 + i / 2, ("ansan", "pangyo")[i % 2]) for i in range(20)]
    cut = m.prune_oldest(keys.audit, names, 3, "audit log")
    kept = [n for n in names if not cut.start <= n < cut.end]
    assert sorted(kept) == sorted(names[-3:])     # the newest three stay, whatever the order they came in
    assert cut.end == prefix_end(keys.audit)      # and everything older goes
    assert m.prune_oldest(keys.audit, names, 20, "audit log") is None


@pytest.mark.parametrize("earlier, later", [
    (1_000.0, 1_000.000001), (999.999999, 1_000.0), (1_796_140_861.5, 1_796_140_862.0), (9.0, 10.0),
    (0.0, 4_102_444_800.0),   # 1970 and 2100
])
def test_audit_keys_sort_newest_first(earlier, later):
    """The audit log's pages are read in key order (etcd 3.5 sorts a descending range only after
    reading all of it), so a later entry's key must sort before an earlier one's."""
    keys = Keys()
    assert keys.audit_entry(later, "siheung") < keys.audit_entry(earlier, "ansan")


def test_ledger_expiry_reads_the_start_from_the_key():
    keys = Keys()
    old, new = keys.ledger_entry(1_000.0, "pangyo"), keys.ledger_entry(9_000.0, "ansan")
    drill_old = keys.ledger_entry(500.0, "siheung", drill=True)
    assert sorted(m.ledger_expired([old, new, drill_old, keys.ledger + "hand-made"], keys.ledger, 5_000.0)) == \
        sorted([old, drill_old])


def test_releases_beyond_the_newest_are_dropped_but_never_the_current():
    created = {"v1": 1, "v2": 2, "v3": 3, "v4": 4}
    assert m.releases_to_drop(created, 2, current="v4") == ["v2", "v1"]
    assert m.releases_to_drop(created, 2, current="v1") == ["v2"]
