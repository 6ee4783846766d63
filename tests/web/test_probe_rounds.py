"""The agent's probe rounds, in-process with real sockets: silence is a completed round without
an answer. A round that runs late (the agent starved of CPU) makes nothing silent; a probe that
raises is no answer, not the end of the round; a probe loop that completes no round for a whole
window vouches for nothing. No etcd is needed: the probe loop does not touch it."""

import asyncio

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


def test_a_probe_that_raises_is_no_answer_and_the_round_completes():
    agent = agent_with_nothing_listening()

    async def probe(site, component):
        if site == "ansan":
            raise ValueError("label too long")  # what the resolver raises for a bad host
        return True  # siheung answers
    agent._probe = probe
    run_rounds(agent, 0.8)
    assert agent.state.round_done is not None
    assert agent.state.unanswered == {"ansan"}
    view = agent.my_view()
    assert view.unreachable_for["ansan"] > 0.4 and view.unreachable_for["siheung"] == 0.0
