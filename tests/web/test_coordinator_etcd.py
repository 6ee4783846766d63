"""The coordinator's shell (control/agent.py: read, tick, execute) against a real etcd, with no
lab: Patroni's keys and the other sites' views are written by the test, as Patroni and the other
agents would write them, and each agent's own probes are set by hand. What it proves beyond the
tick's table tests (tests/unit/test_coordinator.py): the effects reach etcd as the keys the rest
of the estate reads (the coordinator key, the ledger, Patroni's leader and member keys), and a
coordinator lost in the middle of a site's outage leaves one ledger entry that the next one closes
under its original start (issue 31); and a drill declared by the drill runner's own code turns
what the coordinator records into the drill's, until a dead runner's lease takes the declaration
away. etcd starts in about a second and is stopped by its PID."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import asdict

import pytest

from firebreak.control.detector import View
from firebreak.control.failover import UNREACHABLE_API
from firebreak.control.etcd import Etcd
from firebreak.control.keys import Keys, PatroniKeys
from tests.web.conftest import free_port, plain_etcd

SITES = ("pangyo", "ansan", "siheung")
KEYS, PK = Keys(), PatroniKeys()


@pytest.fixture(scope="module")
def etcd_url():
    with plain_etcd("coordinator", "siheung") as url:
        yield url


def agent_of(site: str, url: str):
    from firebreak.control.agent import Agent
    from firebreak.control.config import AgentConfig

    port = free_port()  # nothing listens there: the agent's probes are set by hand
    agent = Agent(AgentConfig.model_validate({
        "site": site, "listen": "127.0.0.1:1", "etcd": [url],
        "sites": {s: {c: f"http://127.0.0.1:{port}" for c in ("etcd", "patroni", "app", "agent")} for s in SITES},
        # Views fresh for 30 s, and an etcd client that waits: these tests are about what the
        # effects write, and CI runs them at nice 19 beside the lab tests (etcd too), where a
        # step may stall past the 0.75 s default or a request past the agent's 0.5 s.
        "detector": {"fresh": 30.0}}))
    agent.etcd = Etcd([url], timeout=5, patience=5)
    return agent


async def write_cluster(etcd: Etcd) -> dict[str, int]:
    """Patroni's keys for pangyo as primary and ansan its synchronous standby, as Patroni writes
    them: each member's key under its own session's lease, the leader key under the leader's."""
    leases = {name: await etcd.grant(300) for name in SITES}
    for name in SITES:
        await etcd.put(PK.member(name), json.dumps({
            "role": "primary" if name == "pangyo" else "replica", "state": "running",
            "api_url": f"http://127.0.0.1:1/{name}/patroni", "conn_url": f"postgres://127.0.0.1:1/{name}"}),
            lease=leases[name])
    await etcd.put(PK.sync, json.dumps({"leader": "pangyo", "sync_standby": "ansan"}))
    await etcd.put(PK.leader, "pangyo", lease=leases["pangyo"])
    return leases


async def publish(etcd: Etcd, site: str, down: dict[str, float]) -> None:
    view = View(site, time.time(), {t: down.get(t, 0.0) for t in SITES if t != site})
    await etcd.put(KEYS.view(site), json.dumps(asdict(view)))


async def site_entries(etcd: Etcd, site: str) -> dict[str, dict]:
    return {kv.key: kv.json() for kv in await etcd.get_prefix(KEYS.ledger)
            if kv.json().get("site") == site and kv.json().get("source") == "agent"}


def test_a_coordinator_lost_mid_outage_leaves_one_entry_its_successor_closes_under_the_original_start(etcd_url):
    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        siheung, ansan = agent_of("siheung", etcd_url), agent_of("ansan", etcd_url)
        try:
            leases = await write_cluster(etcd)
            drill = KEYS.ledger_entry(time.time() - 5, "pangyo", drill=True)
            await etcd.put(drill, json.dumps({"site": "pangyo", "start": time.time() - 5, "end": None,
                                              "kind": "power", "source": "drill"}))
            for site in ("pangyo", "ansan"):
                await publish(etcd, site, {})

            # siheung holds neither the primary nor the standby: it takes the key and acts at once.
            await siheung.coordinator_cycle()
            assert siheung.state.is_coordinator and (await etcd.get(KEYS.coordinator)).value == "siheung"
            assert siheung.state.decisions == {"firebreak": "primary pangyo in pangyo is alive"}

            # pangyo's power is cut: ansan and siheung have not reached it for longer than the window.
            await publish(etcd, "pangyo", {})  # its last view, about to go stale
            await publish(etcd, "ansan", {"pangyo": 1.4})
            siheung.state.last_ok["pangyo"] = time.time() - 1.9
            await siheung.coordinator_cycle()
            assert siheung.state.verdicts["pangyo"].dead and siheung.state.failovers == 1
            assert await etcd.get(PK.leader) is None  # released: Patroni's leader race runs
            # and pangyo's session ended after (not awaited by the tick): back within the ttl, its
            # Patroni must win the key again rather than take a stale copy of it for its own
            # (failover.DeleteLeader). Its member key stays fenced, moved onto a lease of its own
            # first: without it the race would take the real API address from /failsafe.
            await asyncio.gather(*list(siheung._background))
            assert await etcd.lease_ttl(leases["pangyo"]) == -1
            fenced = await etcd.get(PK.member("pangyo"))
            assert json.loads(fenced.value)["api_url"] == UNREACHABLE_API
            assert fenced.lease not in (0, leases["pangyo"]) and 0 < await etcd.lease_ttl(fenced.lease) <= 30
            assert await etcd.lease_ttl(leases["ansan"]) > 0  # nobody else's session
            (key, opened), = (await site_entries(etcd, "pangyo")).items()
            assert opened["end"] is None and opened["failover"].startswith("released leader key of firebreak/pangyo")

            # siheung's agent dies: its lease runs out, its view goes. ansan, still without pangyo, takes over.
            await etcd.revoke(siheung._lease)
            await etcd.delete(KEYS.view("siheung"))
            await etcd.delete(KEYS.view("pangyo"))
            ansan.state.last_ok["pangyo"] = time.time() - 6.0
            await ansan.coordinator_cycle()
            assert ansan.state.is_coordinator
            assert not ansan.state.verdicts["pangyo"].dead  # one fresh view: no verdict, but not over either
            assert ansan.state.open_incidents["pangyo"].start == opened["start"]
            assert await site_entries(etcd, "pangyo") == {key: opened}  # adopted, nothing new written

            # pangyo's power is back: ansan reaches it. Closed, under the same key and start.
            ansan.state.last_ok["pangyo"] = time.time()
            await ansan.coordinator_cycle()
            (closed_key, closed), = (await site_entries(etcd, "pangyo")).items()
            assert closed_key == key and closed["start"] == opened["start"] and closed["end"] is not None
            assert closed["failover"] == opened["failover"] and closed["recorded_by"] == "ansan"
            assert ansan.state.open_incidents == {}
            assert json.loads((await etcd.get(drill)).value)["end"] is None  # a drill's entry is the drill's
        finally:
            await siheung.close()
            await ansan.close()
            await etcd.close()
    asyncio.run(script())


def test_a_release_fences_the_old_primarys_timeline_in_the_same_transaction_and_a_stale_fence_comes_out(etcd_url):
    """The release writes Patroni's /history with the released primary's timeline as past
    (failover.fenced_history) in the transaction that deletes the key: one revision for both, so
    no reader sees the key gone and the history not yet fenced. A fence no standby got past is
    taken out again after FENCE_HOLD."""
    from patroni.dcs import Cluster, Status, TimelineHistory

    from firebreak.control.failover import FENCE_HOLD, FENCE_MARK

    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        siheung = agent_of("siheung", etcd_url)
        try:
            for prefix in ("/firebreak/", "/service/"):  # what the tests above left
                await etcd.delete_range(prefix, prefix[:-1] + "0")
            leases = await write_cluster(etcd)
            member = (await etcd.get(PK.member("pangyo")))
            await etcd.put(PK.member("pangyo"), json.dumps({**member.json(), "timeline": 2, "xlog_location": 50331808}),
                           lease=member.lease)
            before = '[[1,25165984,"no recovery target specified","2026-12-05T10:00:00+00:00","pangyo"]]'
            await etcd.put(PK.root + "history", before)
            await etcd.put(PK.config, json.dumps({"ttl": 20}))  # read: check_timeline is off
            for site in ("pangyo", "ansan"):
                await publish(etcd, site, {})
            await siheung.coordinator_cycle()
            assert siheung.state.is_coordinator

            await publish(etcd, "ansan", {"pangyo": 1.4})
            siheung.state.last_ok["pangyo"] = time.time() - 1.9
            await siheung.coordinator_cycle()
            assert siheung.state.failovers == 1 and await etcd.get(PK.leader) is None
            history = await etcd.get(PK.root + "history")
            lines = json.loads(history.value)
            assert lines[0] == json.loads(before)[0] and lines[1][:2] == [2, 50331808]
            assert lines[1][2].startswith(FENCE_MARK)
            patroni_sees = Cluster(None, None, None, Status.empty(), [], None, None,
                                   TimelineHistory.from_node(history.mod_revision, history.value), None, {})
            assert patroni_sees.timeline == 3  # the old primary, on 2, is behind: it demotes, never takes the key
            # one revision: the delete is in the same transaction (etcd's history of the key says when it went)
            async def leader_at(revision: int) -> bool:
                got = await etcd._call("/v3/kv/range", {"key": base64.b64encode(PK.leader.encode()).decode(),
                                                        "revision": str(revision)})
                return bool(got.get("kvs"))
            assert await leader_at(history.mod_revision - 1) and not await leader_at(history.mod_revision)
            # The old primary's session lives on while the key is free: revoked, a primary whose
            # read predates the delete would win the key back in update_lock's create-if-absent
            # transaction, past the fence. Once a standby holds the key, it is revoked.
            await asyncio.sleep(0.5)
            assert await etcd.lease_ttl(leases["pangyo"]) > 0
            # its member key, fenced, moved off that lease at once all the same (the lease may run out
            # before another member takes the key, and the race would read the real API from /failsafe)
            assert (await etcd.get(PK.member("pangyo"))).lease not in (0, leases["pangyo"])
            await etcd.put(PK.leader, "ansan", lease=leases["ansan"])
            await asyncio.wait_for(asyncio.gather(*list(siheung._background)), 5)
            assert await etcd.lease_ttl(leases["pangyo"]) == -1
            await etcd.delete(PK.leader)  # and ansan is lost in turn, before its first loop as primary

            # Nobody took the key: after the hold, the fence comes out and Patroni's own rules apply.
            old = json.dumps([lines[0], [2, 50331808, f"{FENCE_MARK}{time.time() - FENCE_HOLD - 1:.3f}"]])
            await etcd.put(PK.root + "history", old)
            await siheung.coordinator_cycle()
            assert json.loads((await etcd.get(PK.root + "history")).value) == [lines[0]]
        finally:
            await siheung.close()
            await etcd.close()
    asyncio.run(script())


def test_a_malformed_view_is_ignored_and_counted_and_the_cycle_goes_on(etcd_url):
    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        agent = agent_of("siheung", etcd_url)
        try:
            await etcd.put(KEYS.view("pangyo"), json.dumps({"observer": "pangyo", "published": time.time(),
                                                            "unreachable_for": {"ansan": "soon"}}))
            await agent.coordinator_cycle()
            assert agent.cycles.errors == {} and "pangyo" not in agent.state.views
            assert set(agent.state.verdicts) == set(SITES)
        finally:
            await agent.close()
            await etcd.close()
    asyncio.run(script())


def test_every_range_a_tick_needs_is_read_at_one_revision_without_a_read_only_transaction(etcd_url):
    """A read-only transaction would be one request, but etcd before 3.5.5 panics when its
    client hangs up mid-apply (etcd-io/etcd#14110): the reads are ranges, the later ones pinned
    to the first one's revision."""
    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        calls = []
        call = etcd._call

        async def recording(path, body):
            calls.append((path, body))
            return await call(path, body)
        try:
            await etcd.put("/ranges-test/a/1", "x")
            await etcd.put("/ranges-test/a/2", "y")
            await etcd.put("/ranges-test/b", "z")
            etcd._call = recording
            got = await etcd.get_ranges([("/ranges-test/a/", True), ("/ranges-test/b", False),
                                         ("/ranges-test/missing", False), ("/ranges-test/none/", True),
                                         ("/ranges-test/a/2", "/ranges-test/b\0")])  # a span: [start, end)
            etcd._call = call
            assert [[kv.value for kv in kvs] for kvs in got] == [["x", "y"], ["z"], [], [], ["y", "z"]]
            assert [path for path, _ in calls] == ["/v3/kv/range"] * 5
            revision = int((await etcd._call("/v3/kv/range", {"key": "eA=="}))["header"]["revision"])
            assert "revision" not in calls[0][1] and {int(b["revision"]) for _, b in calls[1:]} == {revision}
            assert got[0] == await etcd.get_prefix("/ranges-test/a/") and got[1][0] == await etcd.get("/ranges-test/b")
            assert await etcd.get_ranges([]) == []
        finally:
            await etcd.close()
    asyncio.run(script())


def test_a_quiet_agent_puts_its_view_at_the_heartbeat_and_a_silence_at_once(etcd_url):
    """A view that still reads true (detector.still_told) is put again every fresh/3 seconds (2 s
    here), not every probe interval; a site gone silent is put at the next tick."""
    from firebreak.control.agent import Agent
    from firebreak.control.config import AgentConfig

    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        cfg = agent_of("ansan", etcd_url).cfg.model_dump()
        cfg["detector"] = {**cfg["detector"], "probe_interval": 0.1, "probe_timeout": 0.1, "window": 0.5, "fresh": 6.0}
        agent = Agent(AgentConfig.model_validate(cfg))
        silent: set[str] = set()
        revisions: list[tuple[float, int, dict]] = []

        async def probes_answer() -> None:  # the probe loop's stamps, as rounds that heard everyone but `silent`
            while True:
                now = agent.clock()
                agent.state.round_done, agent.state.unanswered = now, set(silent)
                for s in SITES:
                    if s not in silent:
                        agent.state.last_ok[s] = now
                await asyncio.sleep(0.02)

        async def watch() -> None:
            while True:
                kv = await etcd.get(KEYS.view("ansan"))
                if kv and (not revisions or revisions[-1][1] != kv.mod_revision):
                    revisions.append((time.monotonic(), kv.mod_revision, kv.json()["unreachable_for"]))
                await asyncio.sleep(0.01)
        tasks = [asyncio.create_task(f()) for f in (probes_answer, watch, agent.publish_loop)]
        try:
            await asyncio.sleep(4.5)
            quiet = len(revisions)
            while len(revisions) == quiet:  # just after a heartbeat's put: the next is 2 s away
                await asyncio.sleep(0.005)
            silent.add("pangyo")
            went_silent = time.monotonic()
            while not any(r[2]["pangyo"] > 0 for r in revisions) and time.monotonic() - went_silent < 5:
                await asyncio.sleep(0.01)
            told = next(t for t, _, down in revisions if down["pangyo"] > 0)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await agent.close()
            await etcd.close()
        # 4.5 s at a 2 s heartbeat: the first put and two more (a put each probe interval was 45).
        # The bounds are loose: CI runs this at nice 19 beside the lab tests, etcd too.
        assert 1 <= quiet <= 8, revisions
        # silent past the 0.2 s grace, then put at the next tick (0.35 s here): before the next
        # heartbeat, 2 s after the last
        assert told - went_silent < 1.5, (told - went_silent, revisions)
    asyncio.run(script())


# -- a drill declared in etcd (issue 31: drill entries never count as outages) ------------------

def runner_etcd(url: str) -> Etcd:
    return Etcd([url], timeout=2, patience=5)


def test_a_site_lost_under_a_declared_drill_fails_over_and_is_recorded_as_the_drills(etcd_url, caplog):
    """The drill runner's declaration (drill/harness.py Declaration) read by the coordinator's
    shell: kept past its lease's TTL while the drill runs, the failover as for a real loss, the
    incident written as the drill's from opening to closing, the declaration gone at the end."""
    from firebreak.drill.harness import Declaration

    caplog.set_level("INFO", logger="firebreak.agent")

    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        siheung = agent_of("siheung", etcd_url)
        declaration = Declaration("power-cut@1.000", until=time.time() + 300, connect=lambda: runner_etcd(etcd_url),
                                  ttl=5)  # not 2: a 2 s stall (CI, nice 19) would end it
        try:
            for prefix in ("/firebreak/", "/service/"):  # what the tests above left
                await etcd.delete_range(prefix, prefix[:-1] + "0")
            await write_cluster(etcd)
            for site in ("pangyo", "ansan"):
                await publish(etcd, site, {})
            await siheung.coordinator_cycle()
            assert siheung.state.is_coordinator

            await asyncio.to_thread(declaration.open)
            await asyncio.to_thread(declaration.site, "pangyo", "power-cut")
            until = time.monotonic() + 6.0  # past the declaration's TTL, the agents cycling as they do
            while time.monotonic() < until:
                for site in ("pangyo", "ansan"):
                    await publish(etcd, site, {})
                siheung.state.last_ok["pangyo"] = time.time()
                await siheung.coordinator_cycle()
                await asyncio.sleep(0.2)
            assert siheung.state.is_coordinator
            assert (await etcd.get(KEYS.drill("pangyo"))).lease != 0  # kept alive while the drill runs

            # pangyo's power is cut, as the drill does it: the failover runs as for a real loss.
            await publish(etcd, "pangyo", {})
            await publish(etcd, "ansan", {"pangyo": 1.4})
            siheung.state.last_ok["pangyo"] = time.time() - 1.9
            await siheung.coordinator_cycle()
            assert siheung.state.verdicts["pangyo"].dead and siheung.state.failovers == 1
            assert await etcd.get(PK.leader) is None
            assert await site_entries(etcd, "pangyo") == {}  # nothing an outage for claims
            (key, opened), = {kv.key: kv.json() for kv in await etcd.get_prefix(KEYS.ledger)}.items()
            assert key == KEYS.ledger_entry(opened["start"], "pangyo")  # the agents' key, under the drill
            assert (opened["source"], opened["drill"], opened["end"]) == ("drill", "power-cut@1.000", None)
            assert opened["failover"].startswith("released leader key of firebreak/pangyo")
            assert any("pangyo lost during drill power-cut@1.000" in r.getMessage() for r in caplog.records)

            await asyncio.to_thread(declaration.close)
            assert await etcd.get(KEYS.drill("pangyo")) is None

            # pangyo is back after the drill's end: closed, still the drill's, under the same key.
            await publish(etcd, "ansan", {})
            siheung.state.last_ok["pangyo"] = time.time()
            await siheung.coordinator_cycle()
            closed = (await etcd.get(key)).json()
            assert closed["end"] is not None and (closed["source"], closed["drill"]) == ("drill", "power-cut@1.000")
        finally:
            await asyncio.to_thread(declaration.close)
            await siheung.close()
            await etcd.close()
    asyncio.run(script())


def test_a_dead_runners_declaration_expires_and_a_malformed_one_is_no_drill(etcd_url):
    """A drill runner killed mid-drill leaves its declaration to its lease: gone within the TTL.
    A declaration that does not parse, or is under no lease, is ignored and counted, and the
    cycle goes on: no drill there, so an outage would be recorded as real."""
    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        agent = agent_of("siheung", etcd_url)
        ignored: list[str] = []
        agent.cycles.count_ignored = ignored.append
        try:
            await etcd.delete_range(KEYS.drills, KEYS.drills[:-1] + "0")
            lease = await etcd.grant(6)  # nobody keeps it alive: the runner is dead (not 2: CI stalls)
            good = json.dumps({"drill": "d@1", "since": time.time(), "until": time.time() + 600})
            await etcd.put(KEYS.drill("pangyo"), good, lease=lease)
            await etcd.put(KEYS.drill("ansan"), json.dumps({"drill": "d@1", "until": "later"}), lease=lease)
            await etcd.put(KEYS.drill("siheung"), good)  # by hand, without a lease: would never go
            await etcd.put(KEYS.drill("gwangju"), good, lease=lease)  # not a site of this estate
            declared = await agent.read_drills()
            assert set(declared) == {"pangyo"} and declared["pangyo"].id == "d@1"
            assert ignored == ["drill", "drill"] and agent.cycles.errors == {}

            deadline = time.monotonic() + 20
            while "pangyo" in await agent.read_drills():
                assert time.monotonic() < deadline, "the dead runner's declaration outlived its lease"
                await asyncio.sleep(0.2)
        finally:
            await etcd.delete_range(KEYS.drills, KEYS.drills[:-1] + "0")
            await agent.close()
            await etcd.close()
    asyncio.run(script())


def test_a_released_session_ends_whatever_became_of_its_member_key(etcd_url, caplog):
    """Agent._end_session's other paths, on a real etcd: a member back under a new lease keeps its
    key (only the old session is revoked); a lease already gone is done at once, without a
    warning (a revoke whose answer was lost finds it so)."""
    async def script():
        etcd = Etcd([etcd_url], timeout=3)
        siheung = agent_of("siheung", etcd_url)
        try:
            old, new = await etcd.grant(300), await etcd.grant(300)
            await etcd.put(PK.member("pangyo"), json.dumps({"api_url": "http://10.0.0.1:8008/patroni"}), lease=new)
            await siheung._end_session("pangyo", old, PK, ttl=5)
            assert await etcd.lease_ttl(old) == -1
            back = await etcd.get(PK.member("pangyo"))
            assert back.lease == new and "10.0.0.1" in back.value  # its own key, under its own lease, untouched

            tries, revoke = [], siheung.etcd.revoke

            async def counted(lease):
                tries.append(lease)
                return await revoke(lease)
            siheung.etcd.revoke = counted
            await siheung._end_session("pangyo", old, PK, ttl=5)  # gone already
            assert tries == [old], "a lease that is not there was asked for again"
            assert not [r for r in caplog.records if "could not revoke" in r.getMessage()]
        finally:
            await siheung.close()
            await etcd.close()
    asyncio.run(script())
