"""Gray failures on the real lab: one cut link, a paused site, a paused PostgreSQL, and values in
etcd no agent expects. None may cost more than a power cut, and no agent may stop on data.
Shares the agents' lab with the other control-plane modules; each test leaves it healthy."""

import asyncio
import json
import os
import threading
import time

import httpx
import psycopg
import pytest

from firebreak.drill import checks
from firebreak.lab import access, lab
from firebreak.lab.state import lab_home, load, load_secrets
from tests.lab.conftest import wait_for
from tests.lab.test_control_e2e import healthy, run_load, settled_coordinator, stored_keys, stored_ordinary

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="cut links and paused sites need network namespaces (root)")]

PAUSE = 8.0  # the measured case: every process of the primary's site stopped for 8 s


def roles(st):
    """(the primary's site, the synchronous standby's, the third), once the coordinator sits in
    the third, where placement puts it. Right after another module's fault (etcd away, say) an
    agent elsewhere may still hold the key for a moment, and a fault of its own site would then
    cost its lease: not what these tests measure. The roles are read again while waiting: the
    test before may have just made another standby synchronous (a flap moves it), and the
    coordinator then settles in the site that is the third now, not in the one `st` names."""
    consoles = {n: s["console"] for n, s in st["sites"].items()}

    def settled():
        now = lab.status()
        sync = next((n for n, s in now["sites"].items() if s["postgres"]["role"] == "sync_standby"), None)
        third = next((n for n in now["sites"] if n not in (now["primary"], sync)), None)
        if now["primary"] and sync and settled_coordinator(consoles) == third:
            return now["primary"], sync, third
        return None
    return wait_for(settled, 60, "the coordinator to settle in the site holding neither primary nor standby")


def rejoined(site):
    wait_for(lambda: lab.status()["sites"][site]["postgres"]["role"] in ("replica", "sync_standby"), 120,
             f"{site} to rejoin as a replica by itself")
    wait_for(healthy, 120, "every standby to stream again")


def server_of(st, site):
    return f"{st['sites'][site]['address']}:{st['sites'][site]['postgres']['port']}"


def judge_pause(st, victim, sync, survivors, fault):
    """A pause fails over like a power cut, before the pause ends; the old primary, when it
    resumes, acknowledges nothing and rejoins as a replica; nothing acknowledged is lost."""
    resumed = threading.Event()

    def pause_then_resume():
        fault()
        threading.Timer(PAUSE, lambda: (lab.resume(victim), resumed.set())).start()
    try:
        ops, at, _ = run_load(st, pause_then_resume, survivors, settle=PAUSE + 2.0, writers_via=survivors,
                              db_doors=[survivors[0]])
    finally:
        resumed.wait(PAUSE + 30)
        lab.resume(victim)
    rto = checks.write_rto(ops, at)
    # Failed over while the old primary was still paused, not when the pause ended (measured
    # before: 8.01 s). How fast is the benchmarks' business (bench/drills.py: 1.5-1.9 s); beside
    # the other tests on 2 cores this took up to 6.65 s in CI (2026-12-04), so the bar is 1 s
    # before the pause ends.
    assert rto is not None and rto < PAUSE - 1.0, f"writes resumed {rto} s after the pause began: not failed over"
    after = wait_for(healthy, 120, "a healthy lab after the pause") and lab.status()
    assert after["primary"] == sync, "the synchronous standby must be the one promoted"
    late = [o for o in checks.acked(ops) + checks.acked(ops, "sql")
            if o.primary in (server_of(st, victim), st["sites"][victim]["address"]) and o.complete > at + 0.5]
    assert late == [], f"the paused primary acknowledged {len(late)} writes after it resumed"
    assert checks.split_brain(ops) == []
    assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
    assert checks.lost_writes(ops, stored_ordinary(after["postgres_dsn"]), "sql") == []
    rejoined(victim)


def test_a_paused_primary_site_is_failed_over_and_rejoins_when_it_resumes(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    victim, sync, third = roles(st)
    judge_pause(st, victim, sync, [sync, third], lambda: lab.pause(victim))


def test_a_paused_primary_postgresql_alone_is_failed_over(running_lab):
    """A storage hang: the site's agent, Patroni and doors answer, its PostgreSQL does not."""
    st = wait_for(healthy, 90, "a healthy lab")
    victim, sync, third = roles(st)
    judge_pause(st, victim, sync, [sync, third], lambda: lab.pause(victim, "postgres"))


def cut_under_load(st, a, b, hold=8.0):
    """Writers through every door, the link a-b cut for `hold` seconds, then healed."""
    def cut():
        lab.cut(a, b)
        threading.Timer(hold, lambda: lab.uncut(a, b)).start()
    try:
        ops, at, _ = run_load(st, cut, list(st["sites"]), settle=hold + 1.0)
    finally:
        time.sleep(0.5)
        lab.uncut(a, b)
    return ops, at


def wal_receiver(st, site):
    """(pid, status, replayed LSN as bytes) of a standby's WAL receiver, read on the standby."""
    s = st["sites"][site]
    dsn = (f"postgresql://postgres:{load_secrets(lab_home()).superuser}@{s['address']}:{s['postgres']['port']}"
           "/postgres?connect_timeout=2")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pid, status FROM pg_stat_wal_receiver").fetchone()
        replayed = conn.execute("SELECT pg_last_wal_replay_lsn() - '0/0'").fetchone()[0]
    return (row[0], row[1], int(replayed)) if row else (None, None, int(replayed))


def primary_lsn(st, site):
    s = st["sites"][site]
    dsn = (f"postgresql://postgres:{load_secrets(lab_home()).superuser}@{s['address']}:{s['postgres']['port']}"
           "/postgres?connect_timeout=2")
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])


def test_a_cut_link_to_the_synchronous_standby_makes_the_other_standby_synchronous(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    primary, sync, third = roles(st)
    receiver_before, _, _ = wal_receiver(st, sync)
    assert receiver_before is not None, f"{sync} streams from nobody before the cut"
    ops, at = cut_under_load(st, primary, sync)
    # Measured before: writes stopped for the whole of a 30 s cut. Objective: as a power cut (3 s).
    gap = checks.max_write_gap(ops, at, at + 8.0)
    assert gap < 5.0, f"writes stopped for {gap:.2f} s while one link was cut"
    after = lab.status()
    assert after["primary"] == primary, "no failover: every site was alive"
    assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
    assert checks.split_brain(ops) == []
    wait_for(healthy, 120, "every standby to stream again after the heal")
    # The stream that went silent for the cut was ended (wal_receiver_timeout/wal_sender_timeout
    # 5 s) and a new one started, rather than left to TCP's retransmission backoff, which went on
    # long after the heal (a 2026-12-05 drill); and the new one carries what the primary wrote.
    target = primary_lsn(after, primary)
    def caught_up():
        try:
            r = wal_receiver(after, sync)
        except psycopg.OperationalError:  # a standby restarting answers nothing for a moment
            return None
        return r if r[1] == "streaming" and r[2] >= target else None
    receiver = wait_for(caught_up, 60, f"{sync}'s standby to replay what the primary wrote during the cut")
    assert receiver[0] != receiver_before, "the stream silent for the whole cut was never ended"



FLAP_HALF = 0.75  # the chaos run's worst case: down 0.75 s, up 0.75 s, never cut for the 1 s window
FLAP_FOR = 9.0


def test_a_flapping_synchronous_standby_site_keeps_the_primary_and_every_write(running_lab):
    """The synchronous standby's site loses every link for 0.75 s of each 1.5 s, for 9 s. Measured
    before (chaos seed 3): 9.48 s without a commit, until the link once stayed cut for the window.
    The coordinator makes the third site's standby synchronous at the flap's second lapse (the
    tick story in tests/unit/test_coordinator.py; here, what clients see)."""
    st = wait_for(healthy, 90, "a healthy lab")
    primary, sync, third = roles(st)
    # etcd's leader where placement leaves it once settled (not in the site about to flap)
    wait_for(lambda: lab.etcd_leader_site() == third, 60, f"etcd's leader to settle in {third}")
    stop = threading.Event()

    def flapping():
        down = True
        try:
            while not stop.wait(FLAP_HALF):
                (lab.unisolate if down else lab.isolate)(sync)
                down = not down
        finally:
            lab.unisolate(sync)
    flapper = threading.Thread(target=flapping)

    def flap():
        lab.isolate(sync)
        flapper.start()
        threading.Timer(FLAP_FOR, stop.set).start()
    try:
        ops, at, _ = run_load(st, flap, [primary, third], settle=FLAP_FOR + 1.0)
    finally:
        stop.set()
        if flapper.ident is not None:
            flapper.join(10)
        lab.unisolate(sync)
    gap = checks.max_write_gap(ops, at, at + FLAP_FOR)
    assert gap < 5.0, f"writes stopped for {gap:.2f} s while the synchronous standby's site flapped"
    after = lab.status()
    assert after["primary"] == primary, "no failover: every site was alive"
    # Not asserted: that the third site's standby was made synchronous. In CI, beside the other
    # tests, it once was not (2026-12-04): the test before had left etcd's leader in the
    # standby's site, and with it flapping etcd had no leader half the time, so the coordinator
    # stood down. Placement now takes etcd's leader out of a site whose links flap (table and
    # tick tests: test_failover_decision.py, test_coordinator.py), and this test still starts
    # with it in the third site; the writes above are the guarantee.
    assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
    assert checks.split_brain(ops) == []
    wait_for(healthy, 120, "every standby to stream again after the flap")

def test_a_cut_link_to_etcds_leader_costs_no_failover(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    primary, sync, third = roles(st)
    leader = wait_for(lambda: (lambda s: s if s and s != primary else None)(lab.etcd_leader_site()), 30,
                      "etcd's leader outside the primary's site (the agents place it so)")
    ops, at = cut_under_load(st, primary, leader, hold=12.0)
    gap = checks.max_write_gap(ops, at, at + 12.0)
    assert gap < 5.0, f"writes stopped for {gap:.2f} s while the link to etcd's leader was cut"
    after = lab.status()
    assert after["primary"] == primary, "a needless failover: Patroni demoted a primary every site could reach"
    assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
    wait_for(healthy, 120, "every standby to stream again after the heal")


def test_values_no_agent_expects_stop_no_agent(running_lab):
    """As a site's agent's own etcd identity (it may write only its own view): a malformed view (the
    measured crash), a view under its key naming another observer, and one with a field a newer
    agent might add. Every running agent keeps running,
    ignores the bad ones, counts them, and keeps deciding."""
    st = wait_for(healthy, 90, "a healthy lab")
    primary, sync, third = roles(st)
    quiet = third  # its agent is stopped, so that no lease-held view of its own overwrites ours
    lab.stop_component(quiet, "agent")
    others = [s for s in st["sites"] if s != quiet]
    consoles = {s: st["sites"][s]["console"] for s in others}
    key = f"/firebreak/views/{quiet}"

    async def put(value):
        etcd = access.client(load(lab_home()).layout, access.agent_role(quiet), timeout=5)
        try:
            await etcd.put(key, json.dumps(value))
        finally:
            await etcd.close()

    def ignored(site):
        text = httpx.get(consoles[site] + "/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("firebreak_ignored_values_total{") and 'kind="view"' in line)
    try:
        time.sleep(4)  # its view's lease runs out
        before = {s: ignored(s) for s in others}
        asyncio.run(put({"observer": quiet, "published": time.time(), "unreachable_for": {primary: "3.0"}}))
        time.sleep(3)
        asyncio.run(put({"observer": sync, "published": time.time(), "unreachable_for": {primary: 100.0}}))
        time.sleep(3)
        for s in others:
            assert httpx.get(consoles[s] + "/healthz", timeout=5).status_code == 200, f"{s}'s agent stopped"
            assert ignored(s) > before[s], f"{s}'s agent did not count the values it ignored"
            status = httpx.get(consoles[s] + "/api/status", timeout=5).json()
            assert status["sites"][primary]["dead"] is False and sync not in status["sites"][primary]["votes"]
            assert status["cycle_errors"] == {}, status["cycle_errors"]
        # A field this version does not know: the view counts (its site is fresh again for the
        # detector), nothing is ignored.
        def newer_agents_view():
            asyncio.run(put({"observer": quiet, "published": time.time(), "unreachable_for": {primary: 0.0},
                             "probe": {"kind": "answer", "since": 2}}))
        newer_agents_view()
        time.sleep(0.5)  # the last read of the bad view has been counted
        now = {s: ignored(s) for s in others}
        for _ in range(10):
            newer_agents_view()
            time.sleep(0.3)
        assert {s: ignored(s) for s in others} == now
        procs = lab.status()["sites"]
        assert all(procs[s]["processes"]["agent"]["alive"] for s in others), "an agent exited"
    finally:
        lab.start_component(quiet, "agent")
    wait_for(healthy, 60, "a healthy lab")


def test_a_leader_key_naming_no_member_is_removed_and_patroni_elects_again(running_lab):
    """Measured before: one put of Patroni's leader key (a name that is no member, no lease) with
    the agents' identity left every member following 'x-test', no primary, for minutes."""
    st = wait_for(healthy, 90, "a healthy lab")

    async def put_bogus():
        # Any site's agent may write the leader key: the failover deletes it, and etcd grants no
        # delete without put.
        etcd = access.client(load(lab_home()).layout, access.agent_role(next(iter(st["sites"]))), timeout=5)
        try:
            await etcd.put("/service/firebreak/leader", "x-test")
        finally:
            await etcd.close()
    asyncio.run(put_bogus())
    at = time.monotonic()
    after = wait_for(lambda: (lambda s: s if s["primary"] in st["sites"] else None)(lab.status()), 60,
                     "a primary again, elected by Patroni once the agents removed the bogus key")
    assert time.monotonic() - at < 60
    assert after["primary"] in st["sites"]
    wait_for(healthy, 120, "every standby to stream again")


def test_a_released_primary_that_is_alive_demotes_instead_of_taking_its_key_back(running_lab):
    """What the release's fence in /history (failover.fenced_history) buys, with real Patroni.
    The key of a living primary is released, as the agents release a dead one, while no standby
    can race for it (their Patroni stopped). Released alone, the primary's Patroni takes it back
    on its own timeline: what a flapping site's primary did in its next "up" half, before a
    standby could. Released with the fence, in one transaction as the agents do, it finds itself
    behind the cluster's timeline and demotes. Then the standbys run again and the cluster gets a
    primary on a new timeline (a standby, or the old primary winning Patroni's race as a replica)."""
    import signal

    from firebreak.control.clusters import cluster_state
    from firebreak.control.failover import FENCE_MARK, fenced_history
    from firebreak.control.keys import PatroniKeys

    pk = PatroniKeys()
    st = wait_for(healthy, 90, "a healthy lab")
    standbys = [s for s in st["sites"] if s != st["primary"]]
    patronis = [st["sites"][s]["processes"]["patroni"]["pid"] for s in standbys]

    async def etcd_call(what):
        etcd = access.client(load(lab_home()).layout, access.agent_role(standbys[0]), timeout=5)
        try:
            return await what(etcd)
        finally:
            await etcd.close()

    async def read(etcd):
        return cluster_state({kv.key: kv for kv in await etcd.get_prefix(pk.root)}, pk, "firebreak")

    def release(fence: bool) -> tuple[str, int]:
        """Release the key as the agents do; the released member and its timeline."""
        async def go(etcd):
            c = await read(etcd)
            timeline = json.loads(c.members[c.leader].raw).get("timeline")
            if not fence:
                assert await etcd.cas_delete(pk.leader, c.leader_revision)
                return c.leader, timeline
            history = fenced_history(c.history, c.members[c.leader].raw, time.time())
            assert history is not None, f"{c.leader}'s member key names no timeline: {c.members[c.leader].raw}"
            assert await etcd.put_and_delete(pk.history, history, c.history_revision, pk.leader, c.leader_revision)
            return c.leader, timeline
        return asyncio.run(etcd_call(go))

    def state():
        return asyncio.run(etcd_call(read))

    def member_field(c, member: str, name: str, default):
        """A field of a member's key in one read of the cluster (a key missing for a moment, as
        a Patroni restarts its session, reads as the default)."""
        m = c.members.get(member)
        return json.loads(m.raw).get(name, default) if m is not None else default

    def role(member: str) -> str:
        return member_field(state(), member, "role", "")

    def timeline_of(member: str) -> int:
        return member_field(state(), member, "timeline", 0)

    stopped = False
    try:
        for pid in patronis:
            os.kill(pid, signal.SIGSTOP)
        stopped = True
        # Released alone: taken back by the same primary on the same timeline (the test's control:
        # it proves the standbys cannot race here, and what the fence is for)
        old, timeline = release(fence=False)
        wait_for(lambda: state().leader == old, 20, f"{old}'s Patroni to take its released key back")
        back = state()
        assert member_field(back, old, "role", "") == "primary" and member_field(back, old, "timeline", 0) == timeline

        # Released with the fence: the old primary demotes at its next loop instead (before the
        # agents' coordinator would take the fence out again, 10 s on)
        release(fence=True)
        wait_for(lambda: role(old) not in ("primary", "master"), 9,
                 f"{old}'s Patroni to demote its PostgreSQL, behind the cluster's timeline")
        assert state().leader != old, "the fenced primary took the key back"
    finally:
        if stopped:
            for pid in patronis:
                os.kill(pid, signal.SIGCONT)
    new = wait_for(lambda: (lambda c: c.leader if c.leader and member_field(c, c.leader, "timeline", 0) > timeline
                            and member_field(c, c.leader, "role", "") == "primary" else None)(state()), 90,
                   "a primary on a new timeline once the standbys run")
    # the new primary's Patroni writes the true history over the fence at its first loop as primary
    wait_for(lambda: (lambda lines: len(lines[-1]) == 5 and FENCE_MARK not in str(lines[-1]))(
        json.loads(state().history or "[[0]]")), 60, f"{new} to write the cluster's true history")
    wait_for(healthy, 180, "every member to stream again")
