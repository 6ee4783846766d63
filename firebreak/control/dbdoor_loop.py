"""Steering this site's database door (HAProxy) on each cluster's primary and living standbys,
and telling this site's app when its writes leave the server they went to."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx

from firebreak.control import coordinator, dbdoor, ops

if TYPE_CHECKING:
    from firebreak.control.agent import Agent

log = logging.getLogger("firebreak.agent")


def routes(agent: "Agent") -> dict[str, dbdoor.Routes]:
    """scope -> where this site's database door sends that cluster's clients, now."""
    st = agent.state
    return coordinator.door_routes(agent.my_view(), st.verdicts, st.clusters,
                                   {scope: agent.site_of(scope) for scope in st.clusters}, len(agent.cfg.sites),
                                   st.drained, agent.cfg.detector.window)


async def run(agent: "Agent") -> None:
    """Keep this site's database door on each cluster's current primary and living standbys:
    at once when a cluster or a verdict changes, and every probe interval from this agent's
    own reachability (a site it has not reached for the detector's window gets no clients, and
    their sessions are shut).
    This site's app, which connects to the servers itself, is told when its writes leave the
    server they went to, at the moment the door shuts its own sessions there."""
    cfg = agent.cfg
    dd = cfg.db_door
    ports = dd.ports(cfg.default_scope) if dd is not None else {}
    keeper = None
    if dd is not None:
        keeper = dbdoor.DbDoorKeeper(dd.socket_path, [cfg.member_of(s) for s in cfg.sites])
        agent.db_door = keeper
    app = AppWrites(agent)
    while True:
        due = agent.clock() + cfg.detector.probe_interval
        try:
            await asyncio.wait_for(agent.db_door_wake.wait(), cfg.detector.probe_interval)
        except asyncio.TimeoutError:
            pass
        # Before the routes read this agent's view: after a pause this loop may run first, and
        # the pause is no other site's silence (measured: the door refused writes after it).
        agent.woke(due)
        agent.db_door_wake.clear()
        with agent.cycles.guard("db-door"):
            new_routes = routes(agent)
            if cfg.default_scope in new_routes:
                app.follow(new_routes[cfg.default_scope])
            new = {scope: r for scope, r in new_routes.items() if scope in ports}
            if keeper is not None and new:
                await keeper.apply(new, agent.clock())


class AppWrites:
    """Where this site's app's writes went, as last told; it is told when they leave."""

    def __init__(self, agent: "Agent"):
        self.agent = agent
        self.writes_to: str | None = None
        self._background: set[asyncio.Task] = set()

    def follow(self, now: dbdoor.Routes) -> None:
        before, self.writes_to = self.writes_to, now.rw
        if self.agent.cfg.app_admin_token and dbdoor.writes_left(before, now):
            task = asyncio.create_task(self._tell(before, now))
            self._background.add(task)  # held until done: the loop keeps no other reference
            task.add_done_callback(self._background.discard)

    async def _tell(self, before: str, now: dbdoor.Routes) -> None:
        cfg = self.agent.cfg
        try:
            await ops.push_primary_moved(self.agent.http, cfg.sites[cfg.site].admin_url, cfg.app_admin_token)
            log.info("told this site's app to hang up on %s (%s)", before, now.why)
        except httpx.HTTPError as e:
            # Its pool still finds out, one write deadline later; nothing else depends on this.
            log.warning("could not tell this site's app that writes left %s: %s", before, e)
