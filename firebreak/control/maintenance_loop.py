"""Watching etcd's storage (alarms, database sizes) and, as coordinator, keeping it bounded:
defragmenting one member at a time and pruning the ledger beyond its retention. The rules are
control/maintenance.py's; this is their shell."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from firebreak.control import coordinator, maintenance
from firebreak.control.etcd import EtcdError
from firebreak.control.keys import LEDGER_KEEP_DAYS

if TYPE_CHECKING:
    from firebreak.control.agent import Agent

log = logging.getLogger("firebreak.agent")


async def run(agent: "Agent", every: float = 10.0) -> None:
    cfg = agent.cfg
    last_defrag, last_prune = 0.0, 0.0
    while True:
        await asyncio.sleep(every)
        with agent.cycles.guard("maintenance"):
            try:
                members = await storage(agent)
                _, listed = await agent.etcd.leader_and_members()
                names = {m["ID"]: m.get("name", m["ID"]) for m in listed}
                alarms = [(names.get(mid, mid), kind) for mid, kind in await agent.etcd.alarms()]
            except EtcdError as e:
                agent.state.etcd_health = {"error": str(e)}
                continue
            health = maintenance.storage_health(members, alarms, cfg.etcd_quota_bytes)
            agent.state.etcd_health = {
                "alarms": list(health.alarms), "warnings": list(health.warnings),
                "quota_bytes": cfg.etcd_quota_bytes, "fullest": health.worst_fraction,
                "members": {m.name: {"db_size": m.db_size, "db_size_in_use": m.db_size_in_use,
                                     "revision": m.revision} for m in members}}
            if agent.metrics:
                for m in members:
                    agent.metrics.etcd_db_bytes.labels(cfg.site, m.name, "total").set(m.db_size)
                    agent.metrics.etcd_db_bytes.labels(cfg.site, m.name, "in_use").set(m.db_size_in_use)
                for kind in ("NOSPACE", "CORRUPT"):
                    agent.metrics.etcd_alarm.labels(cfg.site, kind).set(
                        1 if any(k == kind for _, k in alarms) else 0)
            for w in health.warnings:
                log.warning("%s", w)
            if not agent.state.is_coordinator:
                continue
            now = agent.clock()
            target = maintenance.defrag_target(members, coordinator.suspected_sites(agent.state.verdicts),
                                               last_defrag, now)
            admin = agent.etcd_admin or (None if cfg.etcd_access else agent.etcd)
            if target is not None and admin is not None:
                last_defrag = now
                try:
                    await admin.defragment(cfg.sites[target].etcd)
                    log.info("defragmented etcd member %s", target)
                except EtcdError as e:
                    log.warning("could not defragment etcd member %s: %s", target, e)
            if now - last_prune >= 60.0:
                last_prune = now
                try:
                    await prune(agent)
                except EtcdError as e:
                    log.warning("pruning Firebreak's keys failed (will retry): %s", e)


async def storage(agent: "Agent") -> list[maintenance.MemberStorage]:
    """Each living site's etcd member, asked directly (sizes are per member)."""
    dead = coordinator.dead_sites(agent.state.verdicts)
    sites = [s for s in agent.cfg.sites if s not in dead]

    async def one(site: str) -> maintenance.MemberStorage | None:
        try:
            st = await agent.etcd.member_status(agent.cfg.sites[site].etcd)
        except EtcdError:
            return None
        return maintenance.MemberStorage(site, int(st.get("dbSize", 0)), int(st.get("dbSizeInUse", 0)),
                                         int(st.get("header", {}).get("revision", 0)))
    found = await asyncio.gather(*(one(s) for s in sites))
    return [m for m in found if m is not None]


async def prune(agent: "Agent") -> None:
    """Retention for the ledger, the one kept store an agent may write (keys.py lists each
    rule). The audit log and the release store are operators' keys: the consoles prune them
    as the ops user when they add to them (control/actions.py)."""
    prefix = agent.keys.ledger
    ledger = [kv.key for kv in await agent.etcd.get_prefix(prefix, keys_only=True)]
    for key in maintenance.ledger_expired(ledger, prefix, agent.clock() - LEDGER_KEEP_DAYS * 86400):
        await agent.etcd.delete(key)
