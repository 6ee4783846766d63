"""Ops plans (switchover, evacuation, routing) and operator tokens."""

import asyncio
import json

import pytest

from firebreak.control import auth
from firebreak.control.keys import Keys
from firebreak.control.ops import evacuation_plan, routing, switchover_plan, sync_first
from tests.unit.test_failover_decision import SITE_OF, cluster, member, verdict


@pytest.mark.parametrize("to,ok,needle", [
    ("ansan", True, "from pangyo to ansan"),
    ("siheung", False, "only move to the synchronous standby (ansan)"),
    ("pangyo", False, "already holds"),
    ("busan", False, "no running PostgreSQL member"),
])
def test_switchover_plan(to, ok, needle):
    plan = switchover_plan(cluster(), to, SITE_OF, verdict())
    assert plan.ok == ok and needle in plan.reason


def test_switchover_refuses_a_dead_or_unhealthy_target():
    assert not switchover_plan(cluster(), "ansan", SITE_OF, verdict(dead={"ansan"})).ok
    sick = cluster(members={"pangyo": member("pangyo"), "ansan": member("ansan", "starting"), "siheung": member("siheung")})
    assert "not a healthy standby" in switchover_plan(sick, "ansan", SITE_OF, verdict()).reason
    assert "no primary" in switchover_plan(cluster(leader=None), "ansan", SITE_OF, verdict()).reason


@pytest.mark.parametrize("to, expected, why", [
    ("siheung", "siheung", "a healthy asynchronous standby: made synchronous first, then it can take over"),
    ("ansan", None, "already the synchronous standby: the switchover needs nothing first"),
    ("pangyo", None, "already the primary"),
    ("busan", None, "no member there"),
])
def test_a_switchover_to_an_asynchronous_standby_needs_it_made_synchronous_first(to, expected, why):
    assert sync_first(cluster(), to, SITE_OF, verdict()) == expected, why


def test_nothing_is_made_synchronous_for_a_dead_or_sick_target_or_without_synchronous_mode():
    assert sync_first(cluster(), "siheung", SITE_OF, verdict(dead={"siheung"})) is None
    sick = cluster(members={"pangyo": member("pangyo"), "ansan": member("ansan"), "siheung": member("siheung", "starting")})
    assert sync_first(sick, "siheung", SITE_OF, verdict()) is None
    assert sync_first(cluster(sync=()), "siheung", SITE_OF, verdict()) is None  # any standby will do already


def test_evacuating_the_primary_site_moves_the_primary_to_the_sync_standby():
    plan = evacuation_plan(cluster(), "pangyo", SITE_OF, verdict())
    assert plan.ok and plan.candidate == "ansan"
    assert switchover_plan(cluster(sync=()), "siheung", SITE_OF, verdict()).ok  # no /sync: any healthy standby
    other = evacuation_plan(cluster(), "siheung", SITE_OF, verdict())
    assert other.ok and other.candidate is None and "only its traffic" in other.reason
    stuck = cluster(members={"pangyo": member("pangyo"), "ansan": member("ansan", "stopped"),
                             "siheung": member("siheung", "stopped")})
    assert not evacuation_plan(stuck, "pangyo", SITE_OF, verdict()).ok


def test_routing_serves_living_undrained_sites_own_first():
    r = routing(["pangyo", "ansan", "siheung"], "ansan", dead={"pangyo"}, drained={"siheung"})
    assert r["serving"] == ["ansan"] and r["for_this_site"] == ["ansan"]
    r = routing(["pangyo", "ansan", "siheung"], "siheung", dead=set(), drained=set())
    assert r["for_this_site"][0] == "siheung" and r["order"]["pangyo"][0] == "pangyo"


class FakeEtcd:
    """Only for the token round trip: a dict with etcd's get/put shape."""

    def __init__(self):
        self.kv = {}

    async def put(self, key, value, lease=0):
        self.kv[key] = value

    async def get(self, key):
        from firebreak.control.etcd import KV
        return KV(key, self.kv[key], 1, 1, 0) if key in self.kv else None


def test_tokens_are_checked_by_a_keyed_hash_not_argon2():
    token, stored = auth.new_token("kim")
    assert stored.startswith("hmac-sha256$") and token.split(".", 1)[1] not in stored
    assert auth.verify_fast(stored, token) is True
    other = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert auth.verify_fast(stored, other) is False
    assert auth.verify_fast("$argon2id$v=19$m=65536,t=3,p=4$abc$def", token) is None  # legacy: a thread's job


def test_legacy_argon2_hashes_still_verify_off_the_loop():
    from argon2 import PasswordHasher

    etcd, keys = FakeEtcd(), Keys("/fb")
    etcd.kv["/fb/operators/old"] = json.dumps({"hash": PasswordHasher().hash("s3cret"), "role": "admin"})
    assert asyncio.run(auth.authenticate(etcd, keys, "old.s3cret")) == auth.Operator("old", "admin")
    assert asyncio.run(auth.authenticate(etcd, keys, "old.wrong")) is None


def test_operator_tokens_are_hashed_and_verified():
    etcd = FakeEtcd()
    keys = Keys("/fb")
    token = asyncio.run(auth.add_operator(etcd, keys, "kim", "operator"))
    stored = etcd.kv["/fb/operators/kim"]
    assert token.split(".", 1)[1] not in stored and '"hmac-sha256$' in stored
    who = asyncio.run(auth.authenticate(etcd, keys, token))
    assert who == auth.Operator("kim", "operator")
    assert asyncio.run(auth.authenticate(etcd, keys, token + "x")) is None
    assert asyncio.run(auth.authenticate(etcd, keys, "lee." + token.split(".", 1)[1])) is None
    assert asyncio.run(auth.authenticate(etcd, keys, "garbage")) is None
    assert asyncio.run(auth.authenticate(etcd, keys, token + "x" * 200)) is None  # over the cap: not even looked up
    assert auth.allowed("admin", "operator") and not auth.allowed("viewer", "operator")
    assert auth.check_name("Kim!") is not None and auth.check_name("kim") is None
