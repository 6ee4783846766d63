"""Which of the estate's service instances answer: what `check --live` reads as the running
estate (Agent.estate), not on the detector's path."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from firebreak.control.door import dial_of

if TYPE_CHECKING:
    from firebreak.control.agent import Agent


async def run(agent: "Agent", every: float = 1.0) -> None:
    """Every instance a TCP connect, every second."""
    if not agent.cfg.services:
        return
    targets = {(name, site): host_port(url) for name, svc in agent.cfg.services.items()
               for site, url in svc.sites.items()}

    async def one(host: str, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True
    while True:
        with agent.cycles.guard("instances"):
            results = await asyncio.gather(*(one(*hp) for hp in targets.values()))
            found: dict[str, dict[str, bool]] = {}
            for (name, site), ok in zip(targets, results):
                found.setdefault(name, {})[site] = ok
            agent.state.instances = found
        await asyncio.sleep(every)


def host_port(url: str) -> tuple[str, int]:
    host, port = dial_of(url).rsplit(":", 1)
    return host, int(port)
