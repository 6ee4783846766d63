"""`firebreak agent --config FILE`: run one site's agent and its console."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import uvicorn

from firebreak import logs
from firebreak.control import dbdoor_loop, door_loop, instances_loop, maintenance_loop, release_loop
from firebreak.control.agent import Agent
from firebreak.control.config import load_agent_config
from firebreak.control.console import create_console
from firebreak.control.metrics import AgentMetrics
from firebreak.fdlimit import raise_open_files_limit
from firebreak.loopwatch import LoopWatch

RESTART_AFTER = 1.0  # seconds before a loop that ended on an unexpected exception starts again


async def kept(agent: Agent, name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run one of the agent's loops for the agent's life. Each loop guards its own cycles; this
    catches what escapes them (a loop's set-up, a bug between cycles), which would otherwise end
    the gather below and with it every loop: logged, counted as a failed cycle, started again.
    A loop that returns (nothing to do: no door configured) stays ended."""
    while True:
        try:
            await loop()
            return
        except Exception:
            agent.cycles.failed(name)
        await asyncio.sleep(RESTART_AFTER)


async def serve(config_path: str) -> None:
    cfg = load_agent_config(config_path)
    logs.to_stdout(cfg.site)
    raise_open_files_limit()
    agent = Agent(cfg)
    agent.metrics = AgentMetrics(cfg.site)
    host, port = cfg.listen.rsplit(":", 1)
    server = uvicorn.Server(uvicorn.Config(create_console(agent), host=host, port=int(port), log_level="warning",
                                           access_log=False))
    logging.getLogger("firebreak.agent").info("agent starting; peers: %s", ", ".join(agent.others))
    loops = {"probe": agent.probe_loop, "publish": agent.publish_loop, "coordinator": agent.coordinator_loop,
             "release": lambda: release_loop.run(agent), "door": lambda: door_loop.run(agent),
             "db-door": lambda: dbdoor_loop.run(agent), "maintenance": lambda: maintenance_loop.run(agent),
             "instances": lambda: instances_loop.run(agent)}
    watch = LoopWatch(on_stall=agent.metrics.loop_stall)
    watch.start()
    try:
        await asyncio.gather(*(kept(agent, name, loop) for name, loop in loops.items()), server.serve())
    finally:
        watch.stop()
        await agent.close()


def main(config_path: str) -> None:
    asyncio.run(serve(config_path))
