"""Failure detection by agreement: (views, now, config) -> verdicts. No I/O, no clock.

Each site's agent publishes a view: for every other site, how long it has gone without a
successful probe of any of that site's components. A site is dead only when a majority of all
sites, counting only views from the other sites that are fresh, see it unreachable for the
whole window. So one agent's opinion is never enough, and an isolated agent, whose view cannot
reach etcd (or arrives stale), cannot vote anyone dead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping


@dataclass(frozen=True)
class View:
    observer: str
    published: float  # the observer's clock (seconds); sites are assumed NTP-synchronised
    unreachable_for: Mapping[str, float] = field(default_factory=dict)  # target -> seconds; 0 = reachable


@dataclass(frozen=True)
class DetectorConfig:
    window: float = 1.0  # how long a site must stay unreachable in a view to count as a vote
    fresh: float = 1.5   # views older than this do not vote


@dataclass(frozen=True)
class Verdict:
    site: str
    dead: bool
    votes: tuple[str, ...]   # observers that see the site unreachable for the window
    voters: tuple[str, ...]  # observers whose views are fresh
    needed: int
    reason: str


def majority(n_sites: int) -> int:
    return n_sites // 2 + 1


def verdicts(sites: Iterable[str], views: Mapping[str, View], now: float, cfg: DetectorConfig) -> dict[str, Verdict]:
    sites = list(sites)
    needed = majority(len(sites))
    fresh = {o: v for o, v in views.items() if o in sites and 0 <= now - v.published <= cfg.fresh}
    out = {}
    for target in sites:
        voters = tuple(sorted(o for o in fresh if o != target))
        votes = tuple(o for o in voters if _sees_down(fresh[o], target, now, cfg))
        dead = len(votes) >= needed
        if dead:
            reason = f"{len(votes)} of {len(sites)} sites see it unreachable for {cfg.window:g} s ({', '.join(votes)})"
        elif len(voters) < needed:
            reason = (f"suspected by {', '.join(votes)}; " if votes else "") + \
                f"only {len(voters)} fresh views from other sites; {needed} needed to decide anything"
        elif votes:
            reason = f"suspected by {', '.join(votes)}; {needed} of {len(sites)} sites must agree"
        else:
            reason = "reachable"
        out[target] = Verdict(target, dead, votes, voters, needed, reason)
    return out


def _sees_down(view: View, target: str, now: float, cfg: DetectorConfig) -> bool:
    down = view.unreachable_for.get(target, 0.0)
    if down <= 0:
        return False
    return down + (now - view.published) >= cfg.window
