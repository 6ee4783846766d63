"""Keeping this site's app on the current release."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx

from firebreak.control import ops
from firebreak.control.etcd import EtcdError
from firebreak.control.failover import Ignored
from firebreak.errors import BadValue

if TYPE_CHECKING:
    from firebreak.control.agent import Agent

log = logging.getLogger("firebreak.agent")


async def run(agent: "Agent") -> None:
    """A site that was dead during a deploy catches up when it comes back, from the release store
    every site has a copy of."""
    cfg = agent.cfg
    while True:
        await asyncio.sleep(2.0)
        if not cfg.app_admin_token:
            continue
        with agent.cycles.guard("release"):
            current = None
            try:
                current = await agent.etcd.get(agent.keys.release_current)
                if current is None:
                    continue
                release = ops.release_of(current.value)
                app = cfg.sites[cfg.site].app
                running = (await agent.http.get(app + "/version", timeout=1.0)).json().get("version")
                if running != release["version"]:
                    await ops.push_release(agent.http, cfg.sites[cfg.site].admin_url, cfg.app_admin_token, release)
                    log.info("brought this site's app to release %s (was %s)", release["version"], running)
            except BadValue as e:
                agent.cycles.ignore("release", Ignored(current.key, current.mod_revision, str(e)))
            except (EtcdError, httpx.HTTPError, ValueError, AttributeError):
                continue  # etcd or the app unreachable, or the app answered oddly: next time
