"""The soak stops a projection at what a retention rule or a setting bounds it to (bench/soak.py)."""

from bench.soak import descriptor_caps, descriptor_parts, retention_cap
from firebreak.claims.connection import RacingConnection
from firebreak.claims.settings import Settings
from firebreak.claims.store import Store, most_connections
from firebreak.lab.config import PG_WAL_MB


def test_a_members_wal_stops_at_what_postgresql_may_keep():
    samples = [{"counts": {"audit": 10}, "kept": {"audit": 2_000}}]
    assert retention_cap("siheung/postgres WAL", samples) == (1024 + 256 + 1024) * 2**20
    assert sum(PG_WAL_MB.values()) == 2304


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
