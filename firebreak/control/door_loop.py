"""Keeping this site's front door (Caddy, or HAProxy) on the undrained sites, its own first."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from firebreak.control import ops
from firebreak.control.door import DoorKeeper, admin_listen, door_config, socket_path
from firebreak.control.door_haproxy import HaproxyDoorKeeper, backends
from firebreak.control.etcd import EtcdError

if TYPE_CHECKING:
    from firebreak.control.agent import Agent


async def run(agent: "Agent") -> None:
    """Keep this site's front door sending to the undrained sites, its own first.

    Sites found dead are left to the door's own health checks rather than removed here:
    every configuration change is a reload, and a reload closes the door's idle keep-alive
    connections, so a client sending on one at that moment loses its request. Measured: one
    failed read in a surviving site in 20 failovers when the agent reloaded the door at
    detection; the health checks skip a silent upstream within a second anyway. Drains are
    operators' planned actions, and worth a reload."""
    cfg = agent.cfg
    door = cfg.door
    if door is None:
        return
    # An estate's door serves its services; the reference app only where there are no services.
    services = {n: dict(svc.sites) for n, svc in cfg.services.items()} or None
    apps = {} if services else {s: e.app for s, e in cfg.sites.items()}
    if door.kind == "haproxy":
        # A site without an app of its own (its `app` is its door: deploy/render.py) is no server
        # of HAProxy's file, as deploy render writes it.
        served = {s: url for s, url in apps.items() if url != cfg.sites[s].door}
        haproxy = HaproxyDoorKeeper(socket_path(door.admin), cfg.site,
                                    backends(cfg.site, list(cfg.sites), served, services))
        agent.door = haproxy

        async def push(order: list[str]) -> None:
            await haproxy.push(order, agent.clock())
    else:
        caddy = DoorKeeper(door.admin, agent.http)
        agent.door = caddy

        async def push(order: list[str]) -> None:
            await caddy.push(door_config(cfg.site, order, apps, door.listen, admin_listen(door.admin), door.tls,
                                         services), order, agent.clock())
    drained: set[str] | None = None
    read_at = 0.0
    while True:
        with agent.cycles.guard("door"):
            if agent.clock() - read_at >= 1.0:
                read_at = agent.clock()
                try:
                    # Only sites of this estate: a key for another name drains nothing.
                    drained = {kv.key.rsplit("/", 1)[1]
                               for kv in await agent.etcd.get_prefix(agent.keys.drained)} & set(cfg.sites)
                    if drained != agent.state.drained:
                        agent.state.drained = frozenset(drained)
                        agent.db_door_wake.set()  # the database door's reads leave an evacuated site too
                except EtcdError:
                    drained = None  # cut off: keep what the door has, it skips dead upstreams by itself
            if drained is not None:
                await push(ops.routing(list(cfg.sites), cfg.site, set(), drained)["for_this_site"])
        await agent.sleep(cfg.detector.probe_interval)
