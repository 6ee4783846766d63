"""After a drill heals its faults, replicas must agree: etcd's hashes, PostgreSQL's timelines."""

from firebreak.drill.consistency import comparable, etcd_problems, postgres_problems


def test_etcd_members_that_agree():
    hashes = {"pangyo": (0xABCD, 90), "ansan": (0xABCD, 90), "siheung": (0xABCD, 90)}
    assert comparable(hashes) and etcd_problems(hashes, 120) == []


def test_a_diverged_etcd_member_is_named():
    hashes = {"pangyo": (0x1111, 90), "ansan": (0xABCD, 90), "siheung": (0xABCD, 90)}
    [problem] = etcd_problems(hashes, 120)
    assert "disagree at revision 120" in problem and "pangyo 0x00001111" in problem


def test_members_at_different_compactions_are_not_compared():
    hashes = {"pangyo": (0x1111, 80), "ansan": (0xABCD, 90)}
    assert not comparable(hashes) and etcd_problems(hashes, 120) == []


def member(name, role, state, tl):
    return {"name": name, "role": role, "state": state, "timeline": tl}


def test_postgres_members_on_the_new_timeline_streaming():
    ok = [member("a", "leader", "running", 3), member("b", "sync_standby", "streaming", 3),
          member("c", "replica", "streaming", 3)]
    assert postgres_problems(ok) == []


def test_an_old_primary_left_on_its_own_timeline_fails():
    bad = [member("a", "leader", "running", 3), member("b", "replica", "streaming", 2)]
    assert postgres_problems(bad) == ["PostgreSQL member b is on timeline 2, the primary on 3"]
    stuck = [member("a", "leader", "running", 3), member("b", "replica", "stopped", 2)]
    assert "b is stopped, not streaming" in postgres_problems(stuck)[0]
    assert postgres_problems([member("a", "leader", "running", 3), member("b", "leader", "running", 3)])[0] \
        .startswith("PostgreSQL has 2 primaries")
