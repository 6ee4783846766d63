"""`firebreak agent --config FILE`: run one site's agent and its console."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from firebreak import logs
from firebreak.control.agent import Agent
from firebreak.control.config import load_agent_config
from firebreak.control.console import create_console
from firebreak.control.metrics import AgentMetrics
from firebreak.fdlimit import raise_open_files_limit


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
    try:
        await asyncio.gather(agent.probe_loop(), agent.publish_loop(), agent.coordinator_loop(), agent.release_loop(),
                             agent.door_loop(), agent.db_door_loop(), agent.maintenance_loop(), agent.instances_loop(),
                             server.serve())
    finally:
        await agent.close()


def main(config_path: str) -> None:
    asyncio.run(serve(config_path))
