"""Who sits where: pure rules that keep the things a failover needs out of the primary's site.

A power cut of the primary's site should cost exactly one thing, the primary. If the agent
that coordinates failover, or etcd's raft leader, sat in the same building, the cut would also
cost a coordinator lease expiry or an etcd election (1-2 s during which etcd accepts no
writes, so neither the agent nor Patroni can act) before failover could even begin.
"""

from __future__ import annotations

from typing import Iterable


def _ranker(primary_sites: Iterable[str | None] | str | None, sync_sites: Iterable[str]):
    """A site's rank: how many primaries it holds, then how many synchronous standbys (lower is
    better placed). One entry per cluster, so with many clusters the site holding most primaries
    ranks worst; with one cluster it is primary > standby > neither."""
    if primary_sites is None or isinstance(primary_sites, str):
        primary_sites = [primary_sites] if primary_sites else []
    primaries = [p for p in primary_sites if p]
    sync = list(sync_sites)

    def rank(site: str) -> tuple[int, int]:
        return primaries.count(site), sync.count(site)
    return rank, bool(primaries)


def coordination_move(me: str, holder: str | None, primary_site: Iterable[str | None] | str | None,
                      alive_others: Iterable[str], sync_sites: Iterable[str] = ()) -> str:
    """campaign | resign | stay, for the agent in site `me`.

    The coordinator belongs in a site whose loss needs no urgent action: not the primary's
    (its loss needs a failover) and, when possible, not the synchronous standby's either (its
    loss needs the standby dropped, or every commit waits). Otherwise the cut would take out
    the one agent entitled to act, and the action would wait for its lease to expire. A site
    campaigns only when no living site is better placed, and resigns when one is.
    """
    rank, _ = _ranker(primary_site, sync_sites)
    better_alive = any(rank(o) < rank(me) for o in alive_others if o != me)
    if holder is None:
        return "stay" if better_alive else "campaign"
    if holder == me and better_alive:
        return "resign"
    return "stay"


def links_of(site: str | None, links: Iterable[frozenset[str]]) -> int:
    """How many of `links` have `site` at one end."""
    return sum(1 for link in links if site in link)


def etcd_leader_target(leader_site: str | None, primary_site: Iterable[str | None] | str | None,
                       sync_sites: Iterable[str], living_sites: Iterable[str],
                       cut: Iterable[frozenset[str]] = (), by_rank: bool = True,
                       flapping: Iterable[frozenset[str]] = (), lasting: Iterable[frozenset[str]] = ()) -> str | None:
    """The site etcd's leadership should move to, or None to leave it where it is.

    First, reach: a primary's site cut off from the leader's (one link down, every site alive)
    has an etcd member that hears no leader, and its Patroni, which talks to that member, demotes
    the primary once its retry_timeout runs out (measured: a 13.4 s write gap and a needless
    failover). Leadership then moves at once to a living site that every primary's site reaches,
    the one with fewest cut links, whatever its rank.

    Otherwise, rank: the coordinator's ranking (a site holding neither the primary nor a
    synchronous standby is best, a standby's site next, the primary's site last), moving only to
    a site that ranks strictly better, has no cut link, so leadership never ping-pongs between
    equals nor moves into a site that part of the estate cannot hear. `by_rank` False leaves
    out these moves: the coordinator passes it while a primary's site has had a cut link lately
    (a flapping link), or leadership would go to the primary's site at every cut and away at
    every heal (measured: eight moves in 21 s of one site flapping).

    Then, steadiness: a leader in a site with a flapping link (detector.flap_step) moves to a
    living site on fewer flapping links (fewest first, then fewest cut, then rank), whatever
    `by_rank` says. A leader whose site is cut off at every lapse loses leadership each time:
    etcd takes no writes until a new one is elected, and the coordinator, whose lease is in
    etcd, stood down (seen in CI with the synchronous standby's site flapping). No move
    by rank goes into a site on more flapping links than the leader's own, and a move for reach
    prefers a site whose links to the primaries' sites are steady (a primary's own site only if
    its links are), and does not move at all when none is steadier than the leader's, unless the
    leader's link has been down without a break for `lasting` (detector.LASTING).
    """
    rank, any_primary = _ranker(primary_site, sync_sites)
    if leader_site is None:
        return None
    cut, lasting = set(cut), set(lasting)
    primaries = {p for p in ([primary_site] if isinstance(primary_site, str) else primary_site or []) if p}
    living = list(living_sites)

    # Links to a dead site flap no more (its loss is the verdicts' business), as cut links are
    # only between living sites.
    flapping = {link for link in flapping if link <= set(living)}

    def to_primary(site: str, links: set[frozenset[str]]) -> bool:
        return any(frozenset((site, p)) in links for p in primaries if p != site)

    def cut_from_primary(site: str) -> bool:
        return to_primary(site, cut)

    def flaps_to_primary(site: str) -> bool:
        # A primary's own site is no steadier for the primaries than its links are: with the
        # primary's whole site flapping, it once read as the one site steady to the primary, and
        # leadership moved into it, where etcd lost its quorum at every lapse for 13 s. (A link
        # read cut is counted as cut, not as flapping.)
        return to_primary(site, flapping) or (site in primaries and links_of(site, flapping - cut) > 0)

    def links_cut(site: str) -> int:
        return links_of(site, cut)

    def flaps(site: str) -> int:
        return links_of(site, flapping)
    if cut_from_primary(leader_site):
        reachable = sorted((flaps_to_primary(s), links_cut(s), flaps(s), rank(s), s) for s in living
                           if not cut_from_primary(s))
        held = any(frozenset((leader_site, p)) in lasting for p in primaries)
        if not reachable or (reachable[0][0] and flaps_to_primary(leader_site) and not held):
            # Every site's link to the primaries flaps as the leader's does (a primary's site
            # flapping): no site is heard better, and a move is etcd's time for nothing. Not once
            # the leader's link has stayed down for detector.LASTING: that is a cut.
            return None
        return reachable[0][-1]
    if flaps(leader_site):
        steadier = sorted((flaps(s), links_cut(s), rank(s), s) for s in living
                          if flaps(s) < flaps(leader_site) and not cut_from_primary(s))
        if steadier:
            return steadier[0][-1]
    if not any_primary or not by_rank:
        return None
    better = sorted((rank(s), s) for s in living
                    if rank(s) < rank(leader_site) and not links_cut(s) and flaps(s) <= flaps(leader_site))
    return better[0][1] if better else None
