"""The soak stops a projection at what a retention rule or a setting bounds it to (bench/soak.py)."""

from bench.soak import retention_cap
from firebreak.lab.config import PG_WAL_MB


def test_a_members_wal_stops_at_what_postgresql_may_keep():
    samples = [{"counts": {"audit": 10}, "kept": {"audit": 2_000}}]
    assert retention_cap("siheung/postgres WAL", samples) == (1024 + 256 + 1024) * 2**20
    assert sum(PG_WAL_MB.values()) == 2304


def test_a_resource_without_a_rule_has_no_cap():
    samples = [{"counts": {"audit": 10}, "kept": {"audit": 2_000}}]
    assert retention_cap("lab logs", samples) is None
    assert retention_cap("ansan/agent memory", samples) is None
