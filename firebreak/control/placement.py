"""Who sits where: pure rules that keep the things a failover needs out of the primary's site.

A power cut of the primary's site should cost exactly one thing, the primary. If the agent
that coordinates failover, or etcd's raft leader, sat in the same building, the cut would also
cost a coordinator lease expiry or an etcd election (1-2 s during which etcd accepts no
writes, so neither the agent nor Patroni can act) before failover could even begin.
"""

from __future__ import annotations

from typing import Iterable


def coordination_move(me: str, holder: str | None, primary_site: str | None, alive_others: Iterable[str],
                      sync_sites: Iterable[str] = ()) -> str:
    """campaign | resign | stay, for the agent in site `me`.

    The coordinator belongs in a site whose loss needs no urgent action: not the primary's
    (its loss needs a failover) and, when possible, not the synchronous standby's either (its
    loss needs the standby dropped, or every commit waits). Otherwise the cut would take out
    the one agent entitled to act, and the action would wait for its lease to expire. A site
    campaigns only when no living site is better placed, and resigns when one is.
    """
    sync = set(sync_sites)

    def rank(site: str) -> int:
        return 2 if site == primary_site else 1 if site in sync else 0

    better_alive = any(rank(o) < rank(me) for o in alive_others if o != me)
    if holder is None:
        return "stay" if better_alive else "campaign"
    if holder == me and better_alive:
        return "resign"
    return "stay"


def etcd_leader_target(leader_site: str | None, primary_site: str | None, sync_sites: Iterable[str],
                       alive_sites: Iterable[str]) -> str | None:
    """The site etcd's leadership should move to, or None to leave it where it is.

    Same ranking as the coordinator's: a site holding neither the primary nor a synchronous
    standby is best, a standby's site next, the primary's site last. Move only to a living site
    that ranks strictly better, so leadership never ping-pongs between equals.
    """
    if leader_site is None or primary_site is None:
        return None
    sync = set(sync_sites)

    def rank(site: str) -> int:
        return 2 if site == primary_site else 1 if site in sync else 0

    better = sorted((rank(s), s) for s in alive_sites if rank(s) < rank(leader_site))
    return better[0][1] if better else None
