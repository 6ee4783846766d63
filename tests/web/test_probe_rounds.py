"""The agent's probe rounds, in-process with real sockets: silence is a completed round without
an answer. A round that runs late (the agent starved of CPU) makes nothing silent; a probe that
raises is no answer, not the end of the round; a probe loop that completes no round for a whole
window vouches for nothing. No etcd is needed: the probe loop does not touch it."""

import asyncio

from firebreak.control.agent import PROBED
from tests.web.conftest import free_port

SITES = ("pangyo", "ansan", "siheung")


def agent_with_nothing_listening():
    from firebreak.control.agent import Agent
    from firebreak.control.config import AgentConfig

    port = free_port()  # nothing listens there: no other site answers
    cfg = AgentConfig.model_validate({
        "site": "pangyo", "listen": "127.0.0.1:1", "etcd": [f"http://127.0.0.1:{free_port()}"],
        "sites": {s: {c: f"http://127.0.0.1:{port}" for c in ("etcd", "patroni", "app", "agent")} for s in SITES}})
    return Agent(cfg)


def run_rounds(agent, seconds: float) -> None:
    async def go():
        task = asyncio.create_task(agent.probe_loop())
        await asyncio.sleep(seconds)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await agent.close()
    asyncio.run(go())


def test_sites_that_do_not_answer_read_silent_once_rounds_complete_without_them():
    agent = agent_with_nothing_listening()
    run_rounds(agent, 1.2)
    assert agent.state.unanswered == {"ansan", "siheung"} and agent.state.round_done is not None
    view = agent.my_view()
    assert all(view.unreachable_for[s] > 0.4 for s in ("ansan", "siheung")), view


def test_a_late_round_is_no_silence_but_a_loop_without_rounds_for_a_window_vouches_for_nothing():
    agent = agent_with_nothing_listening()
    now, late = agent.clock(), 0.8 * agent.cfg.detector.window  # past the grace, within the window
    assert late > agent.cfg.detector.probe_interval + agent.cfg.detector.probe_timeout
    agent.state.last_ok.update({"ansan": now - late, "siheung": now - late})  # stamps old: the round runs late
    agent.state.unanswered = set()                                            # the last one heard both
    agent.state.round_done = now - late
    assert agent.my_view().unreachable_for == {"ansan": 0.0, "siheung": 0.0}
    agent.state.round_done = now - agent.cfg.detector.window - 0.5
    assert all(v > 0 for v in agent.my_view().unreachable_for.values())
    asyncio.run(agent.close())


def test_a_probe_that_raises_is_no_answer_and_the_round_completes(monkeypatch):
    import dataclasses

    from firebreak.control import agent as agent_mod
    agent = agent_with_nothing_listening()
    for (site, c), p in list(agent._targets.items()):
        if site == "ansan":
            agent._targets[(site, c)] = dataclasses.replace(p, host="ansan.invalid")

    async def ask(probe, timeout):
        if probe.host == "ansan.invalid":
            raise ValueError("label too long")  # what the resolver raises for a bad host
        return True  # siheung answers
    monkeypatch.setattr(agent_mod.probes, "ask", ask)
    run_rounds(agent, 0.8)
    assert agent.state.round_done is not None
    assert agent.state.unanswered == {"ansan"}
    view = agent.my_view()
    assert view.unreachable_for["ansan"] > 0.4 and view.unreachable_for["siheung"] == 0.0


def agent_over(listeners: dict[str, int]):
    """An agent at pangyo whose other sites' components listen on the given ports (component ->
    port, the same for ansan and siheung)."""
    from firebreak.control.agent import Agent
    from firebreak.control.config import AgentConfig

    return Agent(AgentConfig.model_validate({
        "site": "pangyo", "listen": "127.0.0.1:1", "etcd": [f"http://127.0.0.1:{free_port()}"],
        "sites": {s: {c: f"http://127.0.0.1:{listeners[c]}" for c in ("etcd", "patroni", "app", "agent")}
                  for s in SITES}}))


def rounds_against(kinds: dict[str, str], seconds: float) -> tuple[object, dict[str, int], list[dict]]:
    """Probe rounds for `seconds` against components that answer HTTP ("answers", or "slow":
    80 ms later), accept and
    say nothing ("paused": the kernel completes the handshake), or listen nowhere ("refuses").
    Returns the agent, how many connections each component took ("site asks": the rounds' asks
    of a site, two a round, which a loaded machine makes fewer than the time allows), and each
    completed ask's answers (component -> True when it answered; "full round": whether it was
    one). CI runs these tests at nice 19
    beside the lab tests, where any one round may stall past its 0.1 s timeout: what a test
    asserts of the answers holds for most rounds, not for whichever happened to be last."""
    import socket

    taken = {c: 0 for c in kinds} | {"site asks": 0}
    asks: list[dict[str, bool]] = []
    fulls: list[bool] = []  # whether each ask was of a full round

    async def go():
        servers, mute, ports = [], [], {}
        for c, kind in kinds.items():
            if kind in ("answers", "slow"):
                async def answer(reader, writer, c=c, delay=0.08 if kind == "slow" else 0.0):
                    taken[c] += 1
                    await reader.read(100)
                    await asyncio.sleep(delay)  # a far site: 80 ms of a 100 ms timeout
                    writer.write(b"HTTP/1.0 200 OK\r\n\r\n")
                    await writer.drain()
                    writer.close()
                servers.append(await asyncio.start_server(answer, "127.0.0.1", 0))
                ports[c] = servers[-1].sockets[0].getsockname()[1]
            elif kind == "paused":
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.listen(1000)  # never accepted: handshakes complete, nothing answers
                mute.append(s)
                ports[c] = s.getsockname()[1]
            else:
                ports[c] = free_port()
        agent = agent_over(ports)
        ask_site = agent._ask_site

        async def counted(site, full):
            taken["site asks"] += 1
            answers = await ask_site(site, full)
            asks.append({c: a is True for c, a in answers.items()})
            fulls.append(full)
            return answers
        agent._ask_site = counted
        task = asyncio.create_task(agent.probe_loop())
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()
        for s in servers:
            s.close()
        for s in mute:
            s.close()
        return agent
    agent = asyncio.run(go())
    return agent, taken, [{"full round": full, **a} for a, full in zip(asks, fulls)]


def share(asks: list[dict[str, bool]], heard) -> float:
    """The share of the asks for which `heard(answers)` holds."""
    return sum(1 for a in asks if heard(a)) / len(asks)


def test_a_site_whose_etcd_answers_is_asked_nothing_else_between_full_rounds():
    from firebreak.control.agent import FULL_ROUND_EVERY
    agent, taken, asks = rounds_against({"etcd": "answers", "patroni": "answers", "app": "answers", "agent": "answers"}, 2.05)
    full = 2.05 // FULL_ROUND_EVERY + 1
    # two sites each: etcd every round (the last ask may be cut short by the end of the test; the
    # count of rounds is the loop's own, not the time's: CI beside the lab tests ran 24 of 41),
    # the others in the full rounds only (the first is full)
    assert taken["site asks"] >= 10 and taken["etcd"] >= taken["site asks"] - 2, taken
    # ... or when etcd's answer came later than FIRST_LEAD of the timeout, which a loaded machine
    # does now and then (CI beside the lab tests: 12 of 40 rounds): never every round, as before.
    assert all(2 <= taken[c] <= max(2 * full, taken["etcd"] / 2) for c in ("patroni", "app", "agent")), taken
    assert share(asks, lambda a: a["etcd"]) >= 0.8, asks
    full_asks = [a for a in asks if a["full round"]]
    assert full_asks and share(full_asks, lambda a: all(a[c] for c in PROBED)) >= 0.5, full_asks


def test_a_site_whose_etcd_is_down_or_paused_is_vouched_for_by_another_component_in_the_same_round():
    for etcd in ("refuses", "paused"):
        agent, taken, asks = rounds_against({"etcd": etcd, "patroni": "refuses", "app": "answers", "agent": "refuses"}, 1.2)
        assert taken["site asks"] >= 6 and taken["app"] >= taken["site asks"] - 2, (etcd, taken)  # asked in every round
        assert all("app" in a and not (a["etcd"] or a["patroni"] or a["agent"]) for a in asks), (etcd, asks)
        assert share(asks, lambda a: a["app"]) >= 0.8, (etcd, asks)  # the app vouches, round after round
        # every stamp is a round's: none older than a round and its timeout, once a round heard both
        if agent.state.unanswered == set():
            d = agent.cfg.detector
            assert agent.state.round_done - min(agent.state.last_ok.values()) <= d.probe_interval + d.probe_timeout


def test_a_site_where_nothing_answers_reads_silent_with_every_component_down():
    """The first component's silence is not waited out before the others are asked: all four
    are asked by the round's one deadline, and a paused site reads silent."""
    agent, _, asks = rounds_against({"etcd": "paused", "patroni": "paused", "app": "paused", "agent": "paused"}, 1.0)
    assert agent.state.unanswered == {"ansan", "siheung"}
    assert agent.state.components["ansan"] == dict.fromkeys(("etcd", "patroni", "app", "agent"), False)
    assert asks and all(all(c in a for c in PROBED) for a in asks), asks  # all four asked, every round


def test_a_far_site_whose_etcd_is_paused_is_still_vouched_for_by_its_slow_components():
    """The others are asked with the whole timeout while the first does not answer: asked with
    what was left of it, a site 80 ms away whose etcd hung read silent for a second (the review
    of 4d43428 measured 1.01 s, past the window: a false dead verdict)."""
    agent, taken, asks = rounds_against({"etcd": "paused", "patroni": "slow", "app": "slow", "agent": "slow"}, 1.5)
    # Asked with what etcd's wait left (67 ms), the slow ones would answer in full rounds only.
    assert not any(a["etcd"] for a in asks), asks
    between = [a for a in asks if not a["full round"]]
    assert len(between) >= 4 and share(between, lambda a: a["patroni"] and a["app"] and a["agent"]) >= 0.6, asks


def test_a_round_stalled_with_the_agent_is_no_evidence_that_anyone_is_silent(monkeypatch):
    """The agent stopped for 0.5 s in the middle of a round (SIGSTOP, a VM's pause): its probes'
    timeouts fire as it runs again, and the round reads every site silent. Counted, the agent read
    "this site reaches 1 of 3" at once, and its database door refused writes and had its app
    hang up (bench/detector.py's stress: 25 times in 20 minutes, with a 0.5 s pause every 5 s).
    Its misses are no evidence: ansan, which answers, never reads silent, while siheung, which
    never answers, reads silent throughout, the stall included."""
    import time

    from firebreak.control import agent as agent_mod
    agent = agent_with_nothing_listening()
    calls = {"n": 0, "stalled_round": None}

    async def ask(probe, timeout):
        calls["n"] += 1
        if calls["n"] == 30:           # a few rounds in
            calls["stalled_round"] = agent.state.round_done
            time.sleep(0.5)            # the whole agent stopped
        if probe.port != ansan_port:
            return False               # siheung: silent all along
        # Every probe of the stalled round times out; the rounds after it are answered.
        return agent.state.round_done != calls["stalled_round"]
    ansan_port = free_port()
    for (site, c), p in list(agent._targets.items()):
        if site == "ansan":
            import dataclasses
            agent._targets[(site, c)] = dataclasses.replace(p, port=ansan_port)
    monkeypatch.setattr(agent_mod.probes, "ask", ask)
    readings = []

    async def go():
        task = asyncio.create_task(agent.probe_loop())
        for _ in range(15):
            # As the database door's loop: a probe interval apart, its own lateness noted first.
            await agent.sleep(agent.cfg.detector.probe_interval)
            if agent.state.round_done is not None:
                readings.append(dict(agent.my_view().unreachable_for))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()
    asyncio.run(go())
    assert calls["n"] > 40 and calls["stalled_round"], calls  # the stall happened, and rounds went on
    assert [r for r in readings if r["ansan"] > 0] == [], readings
    assert all(r["siheung"] > 0 for r in readings[3:]), readings


def test_an_agent_lagging_for_seconds_still_reads_a_silent_site_silent_a_window_later():
    """Steady lag (every loop late, every round stalled): the stall spans merge into one whose
    end moves with the clock. The agent trusts its last clean round for a window after its first
    stall, no longer: ansan, silent for 10 s, reads silent."""
    agent = agent_with_nothing_listening()
    t = {"now": 1000.0}
    agent.clock = lambda: t["now"]
    agent.state.last_ok.update({"ansan": 1000.0, "siheung": 1000.0})
    agent.state.clean_round_started, agent.state.clean_unanswered = 999.9, set()
    for i in range(100):                                  # 10 s of loops 0.15 s late
        t["now"] = 1000.1 + i * 0.1
        agent._stalled(t["now"] - 0.15, t["now"])
        agent.state.last_ok["siheung"] = t["now"]         # siheung answers still
        agent.state.unanswered, agent.state.round_done = {"ansan"}, t["now"]
    assert len(agent.state.own_stalls) == 1               # merged: its end is now
    view = agent.my_view()
    assert view.unreachable_for["ansan"] > 0.4 and view.unreachable_for["siheung"] == 0.0, view
    asyncio.run(agent.close())


def postgres_silences(answer_after: float, seconds: float = 1.6, stops_at: float | None = None) -> list[tuple[float, float]]:
    """Probe rounds against one watched PostgreSQL, a fake postmaster that answers an SSLRequest
    with 'N' `answer_after` seconds late, and from `stops_at` seconds in never again (a stopped
    postmaster: the kernel still completes handshakes); returns the agent's published silence of
    it, (seconds in, silence) every 20 ms."""
    from firebreak.control import probes

    samples: list[tuple[float, float]] = []

    async def go():
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def postmaster(reader, writer):
            await reader.read(8)
            if stops_at is not None and loop.time() - start >= stops_at:
                await asyncio.sleep(60)
            await asyncio.sleep(answer_after)
            writer.write(b"N")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(postmaster, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        agent = agent_over({c: free_port() for c in PROBED})   # the sites' components: refusing, at once
        agent._commit_path_postgres = lambda: {"firebreak/pangyo": probes.Probe("127.0.0.1", port, probes.SSL_REQUEST,
                                                                                postgres=True)}
        task = asyncio.create_task(agent.probe_loop())
        while loop.time() < start + seconds:
            await asyncio.sleep(0.02)
            samples.append((loop.time() - start, agent.my_view().postgres_silent_for.get("firebreak/pangyo", 0.0)))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()
        server.close()
    asyncio.run(go())
    return samples


def test_a_postgresql_that_answers_late_is_not_silent_and_one_that_never_answers_is_within_a_window():
    """A postmaster answers by forking: on a machine whose every core was busy it took more than a
    probe timeout, round after round, and a living primary was failed over. Its probes now have
    the window to answer; a stopped postmaster still reads silent for the window as soon."""
    from firebreak.control.config import DetectorSettings
    window = DetectorSettings().window
    late = [s for _, s in postgres_silences(answer_after=0.15)]   # one and a half probe timeouts
    # Most samples, not every one: CI runs this at nice 19 beside the lab tests, where the test's
    # own loop (agent and fake postmaster both) may stall past the window now and then. Before,
    # every probe timed out and the silence only grew: past the window in most samples.
    silent = [s for s in late if s >= window]
    assert len(silent) <= 0.1 * len(late), f"a PostgreSQL answering 0.15 s late read silent for the window " \
                                           f"in {len(silent)} of {len(late)} samples (up to {max(late):.2f} s)"
    # Answering at once, then stopped 0.6 s in: silent for the window a window after its last
    # answer (and some rounds, for the one that reads it), as with probes cut off at a timeout.
    stopped = postgres_silences(answer_after=0.0, seconds=2.0, stops_at=0.6)
    first = next((t for t, s in stopped if s >= window), None)
    assert first is not None, f"a stopped PostgreSQL read silent for at most {max(s for _, s in stopped):.2f} s"
    assert first <= 0.6 + window + 0.5, f"a PostgreSQL stopped 0.6 s in read silent for the window only {first:.2f} s in"
