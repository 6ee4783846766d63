"""Who sits where: pure rules that keep the things a failover needs out of the primary's site.

A power cut of the primary's site should cost exactly one thing, the primary. If the agent
that coordinates failover, or etcd's raft leader, sat in the same building, the cut would also
cost a coordinator lease expiry or an etcd election (1-2 s during which etcd accepts no
writes, so neither the agent nor Patroni can act) before failover could even begin.
"""

from __future__ import annotations

from typing import Iterable


def coordination_move(me: str, holder: str | None, primary_site: str | None, others_alive: bool) -> str:
    """campaign | resign | stay, for the agent in site `me`.

    The primary's site campaigns only when no other site is alive to coordinate, and resigns
    when one is.
    """
    hosts_primary = primary_site == me
    if holder is None:
        return "campaign" if not hosts_primary or not others_alive else "stay"
    if holder == me and hosts_primary and others_alive:
        return "resign"
    return "stay"


def etcd_leader_target(leader_site: str | None, primary_site: str | None, sync_sites: Iterable[str],
                       alive_sites: Iterable[str]) -> str | None:
    """The site etcd's leadership should move to, or None to leave it where it is.

    Move only when the leader shares the primary's site; prefer a living site that holds
    neither the primary nor a synchronous standby (so the next failover will not share a site
    with etcd's leader either), then any other living site.
    """
    if leader_site is None or primary_site is None or leader_site != primary_site:
        return None
    alive = [s for s in alive_sites if s != primary_site]
    sync = set(sync_sites)
    for s in alive:
        if s not in sync:
            return s
    return alive[0] if alive else None
