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

from firebreak.control.values import json_object, seconds
from firebreak.errors import BadValue


@dataclass(frozen=True)
class View:
    observer: str
    published: float  # the observer's clock (seconds); sites are assumed NTP-synchronised
    unreachable_for: Mapping[str, float] = field(default_factory=dict)  # target -> seconds; 0 = reachable
    # "<scope>/<member>" -> seconds its PostgreSQL has accepted connections and answered nothing
    # (a storage hang, a paused postmaster); 0 = it answers, or refuses outright (not running:
    # Patroni's own business). Views of agents older than this field have none.
    postgres_silent_for: Mapping[str, float] = field(default_factory=dict)
    # scope -> the revision of its leader key this observer read as not Patroni's own
    # (ClusterState.bogus_leader): removed only when a majority of sites read the same revision.
    bogus_leaders: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_value(cls, site: str, raw: str) -> "View":
        """The view stored under `views/<site>`, or BadValue naming the field. A view counts only
        under its own site's key: one written under another site's key would let one site's host
        vote twice. Fields this version does not know are ignored (a newer agent may add some
        during a rolling upgrade)."""
        d = json_object(raw, f"view {site}")
        if d.get("observer") != site:
            raise BadValue(f"view {site}: observer is {d.get('observer')!r}, not the site of the key it is under")
        published = seconds(d.get("published"), f"view {site}: published")
        down = d.get("unreachable_for")
        if not isinstance(down, dict):
            raise BadValue(f"view {site}: unreachable_for must be an object of site -> seconds")
        silent = d.get("postgres_silent_for", {})
        if not isinstance(silent, dict):
            raise BadValue(f"view {site}: postgres_silent_for must be an object of member -> seconds")
        bogus = d.get("bogus_leaders", {})
        if not isinstance(bogus, dict) or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0
                                                  for r in bogus.values()):
            raise BadValue(f"view {site}: bogus_leaders must be an object of scope -> revision")
        return cls(site, published,
                   {str(t): seconds(s, f"view {site}: unreachable_for.{t}", minimum=0.0) for t, s in down.items()},
                   {str(m): seconds(s, f"view {site}: postgres_silent_for.{m}", minimum=0.0)
                    for m, s in silent.items()},
                   {str(scope): r for scope, r in bogus.items()})


@dataclass(frozen=True)
class DetectorConfig:
    """No defaults here: the operator's settings, and their defaults, are control/config.py's
    DetectorSettings, the one place they are declared."""
    window: float  # how long a site must stay unreachable in a view to count as a vote
    fresh: float   # views older than this do not vote


def settings_problems(probe_interval: float, probe_timeout: float, window: float,
                      fresh: float) -> list[tuple[str, str]]:
    """(field, reason) for each combination of detector settings the detector cannot honour.
    Pure. A window shorter than two probe intervals is one failed probe, not a failure; a view
    may only vote while fresh, so freshness shorter than the window drops every view before it
    can see a whole window; a probe timeout above the interval overlaps the next round, and a
    round then waits for the one before it, so unreachability is measured late."""
    out = []
    if window < 2 * probe_interval:
        out.append(("window", f"{window:g} s is shorter than two probe intervals ({2 * probe_interval:g} s): "
                              "one lost probe would count as a whole window; raise window or lower probe_interval"))
    if fresh < window:
        out.append(("fresh", f"{fresh:g} s is shorter than the window ({window:g} s): no view would stay fresh "
                             "long enough to vote; raise fresh to at least the window"))
    if probe_timeout > probe_interval:
        out.append(("probe_timeout", f"{probe_timeout:g} s is above the probe interval ({probe_interval:g} s): "
                                     "each round would wait for the one before; lower probe_timeout or raise "
                                     "probe_interval"))
    return out


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


def cut_links(sites: Iterable[str], views: Mapping[str, View], now: float, cfg: DetectorConfig,
              dead: Iterable[str] = ()) -> set[frozenset[str]]:
    """Links between two living sites (not in `dead`) that are cut: either end's fresh view has
    seen the other unreachable for the whole window. A dead site's links are not "cut": its loss
    is the verdicts' business, and counting them would keep etcd's leadership from moving
    between the living sites while it is gone. One observer is enough here, unlike for a verdict: a cut
    link is a fact about the two ends, and what is done about it (choosing another synchronous
    standby, moving etcd's leadership) loses nothing if it was wrong.

    Nor is a link cut while a third site's fresh view fails to reach the far end too, however
    briefly: that end is going silent to everyone (a site dying, its verdict a probe round or two
    away), not losing one link. Measured (bench/detector.py, 20 power cuts of the primary's
    site): when the synchronous standby's agent saw the dying primary's site down for the window a
    tick before the others did, its link was read as cut and the standby's member key dropped,
    which then held the failover until Patroni wrote the key again: 4 of 20 cuts took 2.3 s
    instead of 1.4 s."""
    dead = set(dead)
    sites = list(sites)
    everyone = len(sites)
    sites = [s for s in sites if s not in dead]
    fresh = {o: v for o, v in views.items() if o in sites and 0 <= now - v.published <= cfg.fresh}
    # Nor does a view that misses every other site name a cut: its observer is the one gone quiet
    # (isolated, whose loss is the verdicts' business, or its agent paused or starved, its own
    # silence read as everyone's). Measured (bench/detector.py, window 0.5 s, the primary's site's
    # agent paused 0.5 s every 5 s): 15 moves of etcd's leadership in 6 minutes, no fault at all.
    # (agent.py no longer counts its own stall as silence either; starved of CPU, it still may.)
    namers = {o: v for o, v in fresh.items()
              if len(sites) < 3 or not all(_sees_down(v, t, now, cfg) for t in sites if t != o)}

    # Witnesses of a site going silent: views that miss some other site but not all of them (one
    # that misses everyone, however briefly, is starved or cut off itself, and says nothing of t).
    witnesses = {x: v for x, v in fresh.items()
                 if not all(v.unreachable_for.get(t, 0.0) > 0 for t in sites if t != x)}

    def going_silent(o: str, t: str) -> bool:
        """Enough other sites miss t too for a verdict on t to be on its way (a majority of all
        sites with o); fewer, and it is a partition of some links, whose cuts count."""
        missers = sum(1 for x, v in witnesses.items() if x not in (o, t) and v.unreachable_for.get(t, 0.0) > 0)
        return 1 + missers >= majority(everyone)
    return {frozenset((o, t)) for o, v in namers.items() for t in sites
            if t != o and _sees_down(v, t, now, cfg) and not going_silent(o, t)}


def lapsing_links(sites: Iterable[str], views: Mapping[str, View], now: float,
                  cfg: DetectorConfig, dead: Iterable[str] = ()) -> set[frozenset[str]]:
    """Links that either end's fresh view reports failing for half the window or more (its own
    measure, not counting the view's age: a view a round old is not a lapse): not yet a cut,
    perhaps never one. A link that goes down for less than the window, again and again, is never
    cut_links()'s, yet a replication stream over it stalls for seconds at a time (TCP's
    retransmission backoff): measured, a synchronous standby's site flapping every 0.75 s stopped
    commits for 9.48 s. flap_step() counts these lapses. A dead site's links lapse all the time
    it is dead (its loss is the verdicts' business): one lapse, so its return is not a second.
    See lapse_reading for the views that are not read."""
    return lapse_reading(sites, views, now, cfg, dead)[0]


def lapse_reading(sites: Iterable[str], views: Mapping[str, View], now: float, cfg: DetectorConfig,
                  dead: Iterable[str] = ()) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    """(links lapsing, links that could not be judged). With three living sites or more, a view
    that has every other living site lapsing says nothing of any link, as in cut_links: its own
    agent was paused or starved, or its site is the one flapping, which the far ends' views say.
    (Read alone, one starved agent made every link of its site flap, which moves synchronous
    standbys and etcd's leadership for nothing.) Its links are unjudged, and flap_step
    keeps one that was lapsing so: a lapse whose two links' edges are staggered is then not read
    as two lapses, and a dead site's links are judged by the living sites alone."""
    dead = set(dead)
    sites = list(sites)
    living = [s for s in sites if s not in dead]
    fresh = {o: v for o, v in views.items() if o in sites and 0 <= now - v.published <= cfg.fresh}

    def lapsing(v: View, t: str) -> bool:
        return v.unreachable_for.get(t, 0.0) >= cfg.window / 2

    def mute(o: str, v: View) -> bool:
        others = [x for x in living if x != o]
        return o not in dead and len(living) >= 3 and all(lapsing(v, x) for x in others)
    out: set[frozenset[str]] = set()
    unjudged: set[frozenset[str]] = set()
    for o, v in fresh.items():
        links = {frozenset((o, t)) for t in sites if t != o and lapsing(v, t)}
        if mute(o, v):
            unjudged |= links
        else:
            out |= links
    return out, unjudged - out


@dataclass(frozen=True)
class Lapses:
    """What flap_step() carries between ticks: the links lapsing at the last tick, and when each
    link's recent lapses began."""
    lapsing: frozenset[frozenset[str]] = frozenset()
    starts: Mapping[frozenset[str], tuple[float, ...]] = field(default_factory=dict)


# A link flaps when FLAP_LAPSES of its lapses began within FLAP_SPAN seconds: a flap of period up
# to FLAP_SPAN / (FLAP_LAPSES - 1) is caught at its second lapse. One lapse alone is not enough:
# a probe round late once (a busy host) must not move a synchronous standby.
FLAP_SPAN = 5.0
FLAP_LAPSES = 2


def flap_step(lapses: Lapses, lapsing_now: Iterable[frozenset[str]], now: float,
              span: float = FLAP_SPAN, count: int = FLAP_LAPSES,
              unjudged: Iterable[frozenset[str]] = ()) -> tuple[Lapses, frozenset[frozenset[str]]]:
    """One tick of the flap detector: (memory, links lapsing now, now) -> (memory, links that
    flap). A lapse begins at a tick that sees a link lapsing that the tick before did not. A link
    keeps flapping until fewer than `count` of its lapses began within the last `span` seconds,
    so a standby moved off a flapping link is not moved back between two of its lapses.
    `unjudged` (lapse_reading): links no view could judge this tick; one lapsing at the tick
    before is still lapsing, not a lapse that ended and a new one to begin."""
    now_set = frozenset(lapsing_now) | (frozenset(unjudged) & lapses.lapsing)
    # 0 <=: a start stamped after `now` (the clock stepped back) is dropped, not kept for ever.
    starts = {link: tuple(t for t in ts if 0 <= now - t < span) for link, ts in lapses.starts.items()}
    for link in now_set - lapses.lapsing:
        starts[link] = starts.get(link, ()) + (now,)
    starts = {link: ts for link, ts in starts.items() if ts}
    flapping = frozenset(link for link, ts in starts.items() if len(ts) >= count)
    return Lapses(now_set, starts), flapping


# A lapse this long is no flap's drop but a cut, whatever the link did before: the drills' flaps
# drop for 0.4-0.5 s, and a cut read as a flap's drop must still be acted on well within Patroni's
# retry_timeout (6 s in the lab), after which a primary that cannot reach etcd demotes itself.
LASTING = 1.5


def lasting(lapses: Lapses, now: float, hold: float = LASTING) -> frozenset[frozenset[str]]:
    """Links lapsing without a break for `hold` seconds or more (flap_step's memory): a link still
    lapsing whose last lapse began that long ago, or so long ago that its start has left the
    memory (FLAP_SPAN). Pure."""
    def since(link: frozenset[str]) -> float | None:
        starts = lapses.starts.get(link)
        return max(starts) if starts else None
    return frozenset(link for link in lapses.lapsing
                     if (t := since(link)) is None or now - t >= hold)


def agreed_bogus_leaders(sites: Iterable[str], views: Mapping[str, View], now: float,
                         cfg: DetectorConfig) -> dict[str, int]:
    """scope -> the leader key revision that a majority of all sites (fresh views, their own
    included) read as bogus. The same revision: a key Patroni rewrote meanwhile is another one."""
    sites = list(sites)
    counts: dict[tuple[str, int], int] = {}
    for o, v in views.items():
        if o in sites and 0 <= now - v.published <= cfg.fresh:
            for scope, rev in v.bogus_leaders.items():
                counts[(scope, rev)] = counts.get((scope, rev), 0) + 1
    return {scope: rev for (scope, rev), n in counts.items() if n >= majority(len(sites))}


def stall_verdicts(sites: Iterable[str], views: Mapping[str, View], members: Iterable[str], now: float,
                   cfg: DetectorConfig, home: Mapping[str, str] | None = None) -> dict[str, Verdict]:
    """For each member ("<scope>/<member>"): is its PostgreSQL stalled, by agreement? The same
    rule as for sites (a majority of all sites, fresh views only, silent for the whole window),
    except that the member's own site votes too: its agent sees a local storage hang as well as
    anyone, and the site itself is alive (a dead site is verdicts()'s business).

    And a member its own site's agent hears is not stalled (`home`: member -> its site): that
    agent reaches it without a link between sites, so the other sites' silence is their links'
    or their own (measured: a primary failed over at 04:45:27 on 2026-12-06 with two other sites
    silent for 0.5 s, one of them on a link losing 5% of its packets, while every core was busy,
    and its own Patroni and site ran on). "Hears" is strict: the own site's view has an entry for
    the member, says it answered in its last round, and was published less than a window ago
    (a view says 0 until it is stale, and an agent stalled beside its PostgreSQL takes its own
    stall off its gaps). Otherwise the others decide, as before. A stopped or hung postmaster
    answers nobody, its own site included. What this no longer catches: PostgreSQL's port alone
    unreachable from the other sites (a firewall rule) while its own site hears it; the other
    components still vouch for the site, so no verdict covers that case."""
    sites = list(sites)
    home = home or {}
    needed = majority(len(sites))
    fresh = {o: v for o, v in views.items() if o in sites and 0 <= now - v.published <= cfg.fresh}
    voters = tuple(sorted(fresh))
    out = {}
    for m in members:
        votes = tuple(o for o in voters if _late(fresh[o].postgres_silent_for.get(m, 0.0), fresh[o], now, cfg))
        own = fresh.get(home.get(m, ""))
        heard_at_home = (own is not None and own.postgres_silent_for.get(m, -1.0) == 0.0
                         and now - own.published < cfg.window)
        dead = len(votes) >= needed and not heard_at_home
        reason = (f"{len(votes)} of {len(sites)} sites get no answer from its PostgreSQL for {cfg.window:g} s "
                  f"({', '.join(votes)})" if dead else
                  f"silent to {', '.join(votes)}, but its own site {home[m]} gets answers" if votes and heard_at_home else
                  f"silent to {', '.join(votes)}; {needed} must agree" if votes else "answers")
        out[m] = Verdict(m, dead, votes, voters, needed, reason)
    return out


STILL_TOLD_TOLERANCE = 0.005  # s: gaps are rounded to the millisecond


def still_told(told: View, current: View, cfg: DetectorConfig) -> bool:
    """Whether `told`, a view already published, says what `current` says to every reader of
    views: the same sites and servers silent; each gap, grown by the view's age as verdicts,
    cut links and stalls read it (_late), within STILL_TOLD_TOLERANCE of the current one; on
    the same side of half the window, where lapsing_links reads the gap as published; the same
    bogus leaders. While it does, publishing `current` would change nothing the coordinator
    decides; it stops doing so when a site goes silent, answers again, or lapses, and when this
    agent's own stall is taken off a gap."""
    age = current.published - told.published
    if age < 0 or current.observer != told.observer:
        return False
    lapse = cfg.window / 2

    def same(then: Mapping[str, float], now: Mapping[str, float]) -> bool:
        if then.keys() != now.keys():
            return False
        for key, gap in now.items():
            was = then[key]
            if (gap > 0) != (was > 0) or (gap >= lapse) != (was >= lapse) or \
                    (gap > 0 and abs(was + age - gap) > STILL_TOLD_TOLERANCE):
                return False
        return True
    return (same(told.unreachable_for, current.unreachable_for)
            and same(told.postgres_silent_for, current.postgres_silent_for)
            and dict(told.bogus_leaders) == dict(current.bogus_leaders))


def _sees_down(view: View, target: str, now: float, cfg: DetectorConfig) -> bool:
    return _late(view.unreachable_for.get(target, 0.0), view, now, cfg)


def _late(down: float, view: View, now: float, cfg: DetectorConfig) -> bool:
    if down <= 0:
        return False
    return down + (now - view.published) >= cfg.window
