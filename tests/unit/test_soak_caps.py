"""The soak stops a projection at what a retention rule or a setting bounds it to (bench/soak.py)."""

import pytest

from bench.growth import growth
from bench.soak import (bar, bytes_per_revision, compact, descriptor_caps, descriptor_parts, etcd_live, project,
                        retention_cap)
from firebreak.claims.connection import RacingConnection
from firebreak.claims.settings import Settings
from firebreak.claims.store import Store, most_connections
from firebreak.lab.config import PG_WAL_MB


def test_a_members_wal_stops_at_what_postgresql_may_keep():
    samples = [{"counts": {"audit": 10}, "kept": {"audit": 2_000}}]
    assert retention_cap("siheung/postgres WAL", samples) == (1024 + 2048 + 1024) * 2**20
    assert sum(PG_WAL_MB.values()) == 4096


def test_a_resource_without_a_rule_has_no_cap():
    samples = [{"counts": {"audit": 10}, "kept": {"audit": 2_000}}]
    assert retention_cap("lab logs", samples) is None
    assert retention_cap("ansan/agent memory", samples) is None


def test_an_apps_connections_to_postgresql_stop_at_what_its_pools_may_open():
    """The cap is the Store's own pools: each at its max size, a racing pool's attempt holding a
    socket per host until one qualifies (claims.connection.RacingConnection)."""
    settings = Settings(site="ansan", dsn="host=a,b,c dbname=claims", local_dsn="host=a dbname=claims",
                        any_dsn="host=a,b,c dbname=claims")
    store = Store(settings)
    racing = [p for p in (store.primary, store.local, store.anywhere) if p.connection_class is RacingConnection]
    plain = [p for p in (store.primary, store.local, store.anywhere) if p not in racing]
    assert most_connections(settings.pool_size, 3) == sum(p.max_size for p in racing) * 3 + sum(
        p.max_size for p in plain) == 64
    samples = [{"t": 0.0, "members": {"ansan": {}, "pangyo": {}, "siheung": {}}}]
    assert descriptor_caps("ansan/app open files", samples) == {"tcp to postgres": 64}
    assert descriptor_caps("ansan/door open files", samples) == {}


def test_open_files_by_kind_count_a_kind_missing_from_a_sample_as_none():
    samples = [{"t": 100.0, "fd_kinds": {"ansan/app": {"file": 4, "tcp to postgres": 5}}},
               {"t": 120.0, "fd_kinds": {}},                                   # the process was down
               {"t": 140.0, "fd_kinds": {"ansan/app": {"file": 4, "tcp to etcd": 1}}}]
    assert descriptor_parts("ansan/app open files", samples) == {
        "file": [(0.0, 4), (40.0, 4)], "tcp to etcd": [(0.0, 0), (40.0, 1)], "tcp to postgres": [(0.0, 5), (40.0, 0)]}
    assert descriptor_parts("ansan/door open files", samples) == {}


def etcd_samples(live, rate, hours: float = 2.0, per_revision: float = 244.0, retention: float = 300.0):
    """A member's samples every 20 s: `live(t)` bytes of live keys plus the revisions periodic
    compaction keeps (it compacts every `retention` to the revision of a retention before), at
    `rate(t)` revisions a second."""
    out, rev, at = [], 0.0, {}
    for i in range(int(hours * 3600 / 20)):
        t = i * 20.0
        at[t] = rev
        compacted = at.get((t // retention - 1) * retention, 0.0)
        out.append({"t": 1_000.0 + t, "members": {"ansan": {"db_in_use": live(t) + per_revision * (rev - compacted),
                                                            "revision": int(rev)}},
                    "kept": {}, "rss": {}, "fds": {}, "logs": 0})
        rev += rate(t) * 20
    return out


def test_etcd_in_use_less_compactions_history_is_flat_through_a_dip_in_the_write_rate():
    """Run 9's shape: 18.2 revisions a second, 17.1 for twenty minutes at the start of the second
    hour, then 18.3. The database in use follows the rate; the live keys do not grow."""
    def rate(t):
        return 17.1 if 3600 <= t < 4800 else 18.2 if t < 3600 else 18.3
    samples = etcd_samples(lambda t: 1.7 * 2**20, rate)
    assert bytes_per_revision([(s["t"], s["members"]["ansan"]["db_in_use"], s["members"]["ansan"]["revision"])
                               for s in samples], 300) == pytest.approx(244, rel=0.01)
    whole = [(s["t"] - 1_000, s["members"]["ansan"]["db_in_use"]) for s in samples]
    assert growth([p for p in whole if p[0] >= 3600], "mean", 600) * 3600 > 50_000  # the level's wander, read as growth
    row = next(r for r in project(samples) if r["resource"] == "etcd ansan db in use")
    assert row["per_hour"] < 5_000 and row["verdict"] == "pass" and row["fit"] == "mean less compaction's history"


def test_etcd_live_keys_that_grow_are_still_projected():
    samples = etcd_samples(lambda t: 1.7 * 2**20 + 100 * t, lambda t: 18.0)   # 360 kB an hour of new keys
    row = next(r for r in project(samples) if r["resource"] == "etcd ansan db in use")
    assert row["per_hour"] == pytest.approx(360_000, rel=0.05) and row["verdict"] == "FAIL"
    assert etcd_live(samples[:3], "ansan", 600) is None    # no whole compaction cycle: no history to take out


def test_stored_samples_keep_open_files_limits_only_where_they_change():
    samples = [{"t": 100.0 + 20 * i, "fds": {"ansan/app": 30 + i % 3}, "rss": {}, "members": {}, "kept": {}, "logs": 0,
                "fd_limits": {"ansan/app": 20_000 if i < 5 else 4_096}} for i in range(8)]
    before = project([dict(s) for s in samples])
    stored = compact(samples)
    assert [i for i, s in enumerate(stored) if "fd_limits" in s] == [0, 5]   # the first, and where the limit changed
    assert stored[5]["fd_limits"] == {"ansan/app": 4_096}
    assert project(stored) == before


def test_a_rereading_takes_the_runs_own_limits_not_this_machines():
    samples = [{"t": 100.0 + 20 * i, "fds": {}, "rss": {"ansan/app": 50 * 2**20}, "members": {}, "kept": {},
                "logs": 2**20 + i, "fd_limits": {}} for i in range(8)]
    rows = {r["resource"]: r for r in project(samples, limits={"memory": 2**30, "disk_free": 2**31})}
    assert rows["lab logs"]["limit"] == 2**31 and rows["ansan/app memory"]["limit"] == 2**30


def test_the_soak_bar_names_what_misses_it():
    rows = [{"resource": "etcd ansan db in use", "share_of_limit": 0.05, "verdict": "pass"}]
    start = [{"write_rto_s": r, "lost": 0} for r in (1.511, 1.674, 1.576)]
    assert bar(rows, start, [{"write_rto_s": r, "lost": 0} for r in (1.60, 1.70, 1.65)]) == []
    slow = [{"write_rto_s": r, "lost": 0} for r in (1.70, 1.75, 3.1)]          # median 1.75 > 1.1 x 1.576
    assert bar(rows, start, slow) == ["failover at the end 1.750 s (median), over 1.1 x the start's 1.576 s"]
    failing = [{**rows[0], "share_of_limit": 0.163, "verdict": "FAIL"}]
    lossy = [{"write_rto_s": 1.5, "lost": 2}]
    assert bar(failing, start, lossy) == ["etcd ansan db in use 16.3% of its limit in 90 days", "2 acknowledged writes lost"]
    assert bar(rows, {"write_rto_s": 1.581, "lost": 0}, {"write_rto_s": 3.119, "lost": 0})   # run 6's one cut at each end
