"""run.kept: no loop of the agent can end the agent. Each loop guards its own cycles
(control/cycles.py); what escapes them (a loop's set-up, a bug between cycles) is logged, counted
and the loop started again, where one asyncio.gather over every loop used to end with it."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from firebreak.control import run
from firebreak.control.cycles import Cycles


def test_a_loop_that_raises_is_counted_and_started_again_and_one_that_returns_stays_ended(monkeypatch):
    monkeypatch.setattr(run, "RESTART_AFTER", 0.0)
    counted: list[str] = []
    agent = SimpleNamespace(cycles=Cycles(logging.getLogger("test"), counted.append))
    starts = []

    async def flaky() -> None:
        starts.append(1)
        if len(starts) < 3:
            raise KeyError("a value nobody imagined")

    asyncio.run(run.kept(agent, "door", flaky))
    assert len(starts) == 3 and counted == ["door", "door"] and agent.cycles.errors == {"door": 2}


def test_cancelling_the_agent_still_stops_a_kept_loop():
    agent = SimpleNamespace(cycles=Cycles(logging.getLogger("test")))

    async def forever() -> None:
        await asyncio.sleep(3600)

    async def main() -> bool:
        task = asyncio.create_task(run.kept(agent, "probe", forever))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False
    assert asyncio.run(main()) and agent.cycles.errors == {}
