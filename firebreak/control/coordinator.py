"""The coordinator as a pure tick: what the agent saw this cycle in, what to do out.

The one place to read the HA logic, as raft's `Step`/`Ready` and Patroni's `run_cycle` are:
`tick(settings, seen, memory)` takes the views, the clusters, the coordinator key, the ledger (on
taking over) and the clock's reading, and returns `Ready`: the verdicts, the coordinator's new
memory and the effects for the agent's shell to perform, in order (control/agent.py). No I/O, no
clock, no logging here; the decisions it combines stay where they are, each a pure function of
data: the detector (detector.py), the failover (failover.py), who sits where (placement.py), each
service's outage (outages.py), each site's incident (incidents.py) and the database door's routes
(dbdoor.py).

One cycle of the coordinator loop:

1. the shell reads the clusters, the views and the coordinator key (and, as coordinator, the
   `frozen` key and the drills declared; on taking over, the ledger), and ticks;
2. a tick that returns `Campaign` or `Resign` returns nothing else: the shell performs it, reads
   the coordinator key again and ticks again, so an agent that wins the key acts in the same
   cycle, as it always has;
3. otherwise the shell performs the effects in order (every `Failover` at once, in parallel: a
   cluster whose failover is refused delays none of the others).

A coordinator's memory is what it must carry between ticks: the incidents and service outages it
has open (adopted from the ledger when it takes over, so each closes under its original start),
when it last placed etcd's leader, and each cluster's last decision (logged when it changes).

A drill declared over a site (drills.py) changes what is recorded, never what is done: the
failover runs as for a real loss, and the incidents and outages that open because of that site
are written as the drill's.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Collection, Iterable, Mapping

from firebreak.control import clusters as clusters_mod
from firebreak.control import dbdoor, detector, drills, failover, incidents, outages
from firebreak.control.drills import Drill
from firebreak.control.incidents import Incident
from firebreak.control.placement import coordination_move, etcd_leader_target, links_of

if TYPE_CHECKING:
    from firebreak.control.config import AgentConfig

# etcd's leader is placed every PLACE_EVERY seconds at most, and every tick while a primary's site
# has a cut link (if etcd's leader is at its other end, that primary's Patroni is counting down to
# demoting itself).
PLACE_EVERY = 2.0
# Moves that only place etcd's leader better (not those that let a primary's site hear it) wait
# until no primary's site has had a cut link for this long: a flapping link is cut and healed
# every second or so, and each move costs etcd a leader change.
RANK_SETTLE = 10.0


# -- inputs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Service:
    sites: tuple[str, ...]
    databases: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """What the tick needs of the agent's configuration."""
    site: str
    sites: tuple[str, ...]
    window: float   # the detector's, from DetectorSettings (their one home)
    fresh: float
    services: Mapping[str, Service] = field(default_factory=dict)
    # etcd lets only its root move raft leadership: a locked etcd without the admin identity
    # leaves leadership where raft puts it.
    can_place_etcd_leader: bool = True

    @classmethod
    def of(cls, cfg: "AgentConfig", can_place_etcd_leader: bool) -> "Settings":
        return cls(cfg.site, tuple(cfg.sites), cfg.detector.window, cfg.detector.fresh,
                   {n: Service(tuple(s.sites), tuple(s.databases), tuple(s.calls)) for n, s in cfg.services.items()},
                   can_place_etcd_leader)

    @property
    def detector(self) -> detector.DetectorConfig:
        return detector.DetectorConfig(window=self.window, fresh=self.fresh)


@dataclass(frozen=True)
class Seen:
    """What the shell read this cycle."""
    now: float
    views: Mapping[str, detector.View]                  # parsed, one per site, this agent's own included
    clusters: Mapping[str, failover.ClusterState]        # scope -> its state
    site_of: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # scope -> member -> site
    holder: str | None = None   # the coordinator key's value
    mine: bool = False          # ... held under this agent's lease: it is the coordinator
    has_lease: bool = False     # this agent holds a lease (granted by an earlier campaign)
    frozen: bool = False        # operators froze automation (read by the coordinator only)
    # The ledger's values: read by the coordinator when its memory needs it (Memory.adopted False).
    ledger: tuple[str, ...] | None = None
    instances: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)  # service -> site -> answers
    # The drills declared (parsed, under live leases), site -> its declaration (read by the
    # coordinator only; a value that did not parse is not here: no drill).
    drills: Mapping[str, Drill] = field(default_factory=dict)

    def sites_of(self, scope: str) -> Mapping[str, str]:
        return self.site_of.get(scope, {})


@dataclass(frozen=True)
class Memory:
    """What a coordinator carries from one tick to the next."""
    incidents: Mapping[str, Incident] = field(default_factory=dict)     # site -> its open incident
    outages: Mapping[str, outages.Open] = field(default_factory=dict)   # service -> its open outage
    adopted: bool = False       # the open ones were read from the ledger since this agent took over
    placed_at: float = 0.0      # when etcd's leader was last placed
    primary_cut_at: float = float("-inf")  # when a primary's site last had a cut link
    decisions: Mapping[str, str] = field(default_factory=dict)  # cluster -> its last decision's reason
    refused: frozenset[str] = frozenset()  # clusters whose last decision refused a failover (alerted on)
    last_decision: str = ""
    lapses: detector.Lapses = field(default_factory=detector.Lapses)  # links' recent lapses (flap_step)
    flapping: frozenset[frozenset[str]] = frozenset()  # links flap_step() last read as flapping

    @property
    def needs_ledger(self) -> bool:
        return not self.adopted


# -- effects -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Campaign:
    """Create the coordinator key under this agent's lease (granting one if it has none)."""


@dataclass(frozen=True)
class Resign:
    """Revoke this agent's lease: a living site whose loss would need no action is better placed
    to act on the loss of this one."""


@dataclass(frozen=True)
class SteerDoors:
    """New clusters and verdicts: the database door follows now, not at its next interval."""


@dataclass(frozen=True)
class OpenIncident:
    incident: Incident


@dataclass(frozen=True)
class CloseIncident:
    incident: Incident


@dataclass(frozen=True)
class PlaceEtcdLeader:
    """Read etcd's leader and members, and move leadership where etcd_move() says, if anywhere."""
    primary_sites: tuple[str, ...]
    sync_sites: tuple[str, ...]
    living: tuple[str, ...]
    cut: frozenset[frozenset[str]]
    by_rank: bool = True  # False: only a move that lets a primary's site hear the leader (RANK_SETTLE)
    flapping: frozenset[frozenset[str]] = frozenset()  # links that flap (detector.flap_step)
    lasting: frozenset[frozenset[str]] = frozenset()   # links lapsing without a break (detector.lasting)


@dataclass(frozen=True)
class Decided:
    """A cluster's decision changed (logged)."""
    scope: str
    reason: str


@dataclass(frozen=True)
class Flaps:
    """The links read as flapping changed (logged: how often a lossy link is read so is the price
    of acting on flaps, counted by bench/detector.py's stress runs)."""
    links: frozenset[frozenset[str]]


@dataclass(frozen=True)
class Failover:
    """Perform a decision's actions (failover.FenceApi, DropMember, DeleteLeader) for one cluster."""
    scope: str
    decision: failover.Decision


@dataclass(frozen=True)
class RecordOutage:
    write: outages.Write


Effect = (Campaign | Resign | SteerDoors | OpenIncident | CloseIncident | PlaceEtcdLeader | Decided | Flaps
          | Failover | RecordOutage)


@dataclass(frozen=True)
class Ready:
    effects: tuple[Effect, ...]
    memory: Memory
    verdicts: Mapping[str, detector.Verdict]
    stalls: Mapping[str, detector.Verdict]
    cut: frozenset[frozenset[str]]


# -- the tick ----------------------------------------------------------------------------------

def tick(settings: Settings, seen: Seen, memory: Memory) -> Ready:
    """One cycle's decisions. See the module's docstring for how the shell runs it."""
    dcfg, now, sites = settings.detector, seen.now, settings.sites
    verdicts = detector.verdicts(sites, seen.views, now, dcfg)
    path = clusters_mod.commit_path(seen.clusters)
    stalls = detector.stall_verdicts(sites, seen.views, path, now, dcfg,
                                     home={m: seen.sites_of(scope).get(name, name) for m, (scope, name) in path.items()})
    cut = frozenset(detector.cut_links(sites, seen.views, now, dcfg, dead=dead_sites(verdicts)))

    def ready(effects: Iterable[Effect], mem: Memory) -> Ready:
        return Ready(tuple(effects), mem, verdicts, stalls, cut)

    primary_sites, sync_sites = placement_of(seen.clusters, seen.site_of)
    # The other sites whose views are fresh are the ones alive enough to hold the key: the
    # detector's voters on this site (its own freshness rule, not a second copy of it).
    move = coordination_move(settings.site, seen.holder, primary_sites, verdicts[settings.site].voters, sync_sites)
    if move == "campaign":
        return ready([Campaign()], replace(memory, adopted=False))
    if move == "resign" and seen.has_lease:
        return ready([Resign()], replace(memory, adopted=False))
    if not seen.mine:
        # The next coordinator, this agent again included, carries open ones on from the ledger.
        return ready([SteerDoors()], replace(memory, adopted=False))

    effects, mem = _coordinate(settings, seen, memory, verdicts, stalls, cut)
    return ready(effects, mem)


def _coordinate(settings: Settings, seen: Seen, memory: Memory, verdicts: Mapping[str, detector.Verdict],
                stalls: Mapping[str, detector.Verdict], cut: frozenset[frozenset[str]]) -> tuple[list[Effect], Memory]:
    """The coordinator's part of a tick: the incidents, each cluster's decision, etcd's leader,
    each service's outage."""
    dcfg, now, sites = settings.detector, seen.now, settings.sites
    primary_sites, sync_sites = placement_of(seen.clusters, seen.site_of)
    effects: list[Effect] = [SteerDoors()]
    mem = memory
    adopted: set[str] = set()
    # Taking over, the ledger could not be read (etcd slow while it re-elects, say): decide and
    # fail over all the same, and keep the record (incidents, outages) for a tick that reads it.
    # A failover must never wait for bookkeeping.
    records = not (mem.needs_ledger and seen.ledger is None)
    if mem.needs_ledger and seen.ledger is not None:
        mem = replace(mem, adopted=True, incidents=incidents.adopt(seen.ledger, sites),
                      outages=outages.adopt(seen.ledger) if settings.services else {})
        adopted = set(mem.incidents)

    drilling = drills.active(seen.drills, now)
    open_incidents = mem.incidents
    if records:
        open_incidents, incident_writes = incidents.step(mem.incidents, verdicts, now, settings.window, drilling)
        incident_writes = [incidents.found_back(i, settings.site) if i.site in adopted and i.end is not None else i
                           for i in incident_writes]
        effects += [OpenIncident(i) if i.end is None else CloseIncident(i) for i in incident_writes]

    bogus = detector.agreed_bogus_leaders(sites, seen.views, now, dcfg)
    lapsing, unjudged = detector.lapse_reading(sites, seen.views, now, dcfg, dead=dead_sites(verdicts))
    lapses, flapping = detector.flap_step(mem.lapses, lapsing, now, unjudged=unjudged)
    lasting = detector.lasting(lapses, now)
    decisions = {scope: failover.decide(c, verdicts, seen.sites_of(scope), frozen=seen.frozen,
                                        stalled={m.split("/", 1)[1]: v for m, v in stalls.items()
                                                 if m.startswith(scope + "/")}, cut=set(cut),
                                        bogus_agreed=bogus.get(scope) == c.leader_revision,
                                        flapping=set(flapping), now=now, lapsing=set(lapses.lapsing),
                                        lasting=set(lasting))
                 for scope, c in seen.clusters.items()}

    placed_at = mem.placed_at
    leader_cut = any(p in link for link in cut for p in primary_sites)
    primary_cut_at = now if leader_cut else mem.primary_cut_at
    if settings.can_place_etcd_leader and not any(d.failover for d in decisions.values()) and not seen.frozen \
            and (now - placed_at > PLACE_EVERY or leader_cut):
        placed_at = now
        effects.append(PlaceEtcdLeader(tuple(primary_sites), tuple(sync_sites),
                                       tuple(s for s, v in verdicts.items() if not v.dead), cut,
                                       by_rank=now - primary_cut_at >= RANK_SETTLE, flapping=flapping,
                                       lasting=lasting))

    changed = {scope: d.reason for scope, d in decisions.items() if d.reason != mem.decisions.get(scope)}
    effects += [Decided(scope, reason) for scope, reason in changed.items()]
    if flapping != mem.flapping:
        effects.append(Flaps(flapping))
    last = "; ".join((f"{scope}: " if len(decisions) > 1 else "") + d.reason for scope, d in decisions.items())
    effects += [Failover(scope, d) for scope, d in decisions.items() if d.failover]

    open_outages = mem.outages
    if settings.services and records:
        open_outages, writes = _service_outages(settings, seen, verdicts, decisions, open_incidents, mem.outages,
                                                drilling)
        effects += [RecordOutage(w) for w in writes]

    return effects, replace(mem, incidents=open_incidents, outages=open_outages, placed_at=placed_at,
                            primary_cut_at=primary_cut_at, lapses=lapses, flapping=flapping,
                            decisions={**mem.decisions, **changed}, last_decision=last,
                            refused=frozenset(scope for scope, d in decisions.items() if d.refused))


def _service_outages(settings: Settings, seen: Seen, verdicts: Mapping[str, detector.Verdict],
                     decisions: Mapping[str, failover.Decision], open_incidents: Mapping[str, Incident],
                     open_: Mapping[str, outages.Open],
                     drilling: Mapping[str, str]) -> tuple[dict[str, outages.Open], list[outages.Write]]:
    """Each service's own outage (outages.py): what is out now, why, since when, and whether a
    drill declared over its root cause's site made it."""
    dead = dead_sites(verdicts)
    out = {scope: why for scope, c in seen.clusters.items()
           if (why := outages.cluster_out(c, dead, seen.sites_of(scope), decisions[scope].refused))}
    # Instances not probed yet (the agent just started) are not taken for lost.
    no_instance = {name: "no instance runs in a living site" for name, svc in settings.services.items()
                   if name in seen.instances
                   and not any(s not in dead and seen.instances[name].get(s) for s in svc.sites)}
    now_out = outages.causes(out, no_instance, {n: s.databases for n, s in settings.services.items()},
                             {n: s.calls for n, s in settings.services.items()})
    # A cluster that lost its primary's (or standby's) site was out from that site's incident's start.
    started = {}
    for scope, c in seen.clusters.items():
        where = {seen.sites_of(scope).get(n, n) for n in (c.leader, *c.sync_standbys) if n}
        starts = [open_incidents[s].start for s in where if s in open_incidents]
        if starts:
            started[scope] = min(starts)
    root_sites = {scope: _cluster_sites(seen.clusters[scope], seen.sites_of(scope)) for scope in out}
    root_sites.update({name: sorted(settings.services[name].sites) for name in no_instance})
    drill_of = {root: d for root, sites in root_sites.items() if (d := drills.covering(drilling, sites))}
    return outages.step(open_, now_out, seen.now, started, drill_of)


def _cluster_sites(c: failover.ClusterState, site_of: Mapping[str, str]) -> list[str]:
    """The sites a cluster's outage lies in: its commit path's (its primary's and synchronous
    standbys'), or, with no primary, every member's: the one whose loss (or pause) left it
    leaderless is among them, and which one it was is no longer in its keys. So, during a drill,
    a leaderless cluster with a member in the drilled site is taken for the drill's."""
    names = (c.leader, *c.sync_standbys) if c.leader else (*c.members, *c.sync_standbys)
    return sorted({site_of.get(n, n) for n in names if n})


def note_failover(memory: Memory, site: str, done: str) -> tuple[Memory, Incident | None]:
    """A leader key released in `site`: noted on that site's open incident, if it has one; the
    incident to write again, or None."""
    inc = memory.incidents.get(site)
    if inc is None:
        return memory, None
    inc = inc.with_failover(done)
    return replace(memory, incidents={**memory.incidents, site: inc}), inc


# -- moving etcd's leader ----------------------------------------------------------------------

@dataclass(frozen=True)
class EtcdMove:
    leader: Mapping        # the leader's member, as etcd listed it
    target_id: object      # the member to hand leadership to (etcd's ID, as listed)
    from_site: str | None
    to_site: str
    why: str


def etcd_move(place: PlaceEtcdLeader, leader_id: object, members: Iterable[Mapping]) -> EtcdMove | None:
    """Where etcd's leadership goes (placement.etcd_leader_target), given its leader and members
    as etcd lists them (members are named after their sites), or None to leave it."""
    members = list(members)
    by_id = {m["ID"]: m for m in members}
    leader_site = by_id.get(leader_id, {}).get("name")
    target = etcd_leader_target(leader_site, list(place.primary_sites), place.sync_sites, place.living, place.cut,
                                by_rank=place.by_rank, flapping=place.flapping, lasting=place.lasting)
    if target is None:
        return None
    target_member = next((m for m in members if m.get("name") == target), None)
    if target_member is None or leader_id not in by_id:
        return None
    why = ("a primary's site could not hear it" if any(leader_site in link for link in place.cut)
           else "away from a flapping link" if links_of(leader_site, place.flapping) > links_of(target, place.flapping)
           else "away from the primaries' sites")
    return EtcdMove(by_id[leader_id], target_member["ID"], leader_site, target, why)


# -- what each agent reads off the same facts --------------------------------------------------

def placement_of(found: Mapping[str, failover.ClusterState],
                 site_of: Mapping[str, Mapping[str, str]]) -> tuple[list[str], list[str]]:
    """The sites of every cluster's primary and synchronous standbys (one entry per cluster)."""
    primaries = [site_of.get(sc, {}).get(c.leader, c.leader) for sc, c in found.items() if c.leader]
    syncs = [site_of.get(sc, {}).get(n, n) for sc, c in found.items() for n in c.sync_standbys]
    return primaries, syncs


def dead_sites(verdicts: Mapping[str, detector.Verdict]) -> set[str]:
    """Sites a majority voted dead."""
    return {s for s, v in verdicts.items() if v.dead}


def suspected_sites(verdicts: Mapping[str, detector.Verdict]) -> set[str]:
    """Sites voted dead, or seen unreachable by any fresh view: not to be disturbed (etcd's
    maintenance leaves their members alone)."""
    return {s for s, v in verdicts.items() if v.dead or v.votes}


def note_stall(stalls: tuple[tuple[float, float], ...], since: float, until: float,
               keep: float) -> tuple[tuple[float, float], ...]:
    """The agent's own stalls (spans in which it was not running: paused, starved of CPU), with
    [since, until] added, overlapping ones merged, and those ended more than `keep` seconds
    before `until` (or after it: the clock stepped back) forgotten."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted((*(s for s in stalls if 0 <= until - s[1] <= keep), (since, until))):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def absent(stalls: Iterable[tuple[float, float]], since: float, until: float) -> float:
    """How much of [since, until] the agent spent stalled (overlapping spans counted once)."""
    total, reach = 0.0, since
    for a, b in sorted(stalls):
        a, b = max(a, reach), min(b, until)
        if b > a:
            total += b - a
            reach = b
    return total


def stalled_since_clean_round(blind_since: float | None, clean_started: float | None, now: float,
                              window: float) -> bool:
    """Whether this agent stalled since its last unstalled probe round began, at most a window
    ago: then only that round's misses are silence (own_view's `unanswered`). A round stalled
    with the agent reads everyone silent (its timeouts fire as it runs again), and so does a
    loop that reads its view before a round has run since: measured, an agent paused for 0.5 s
    every 5 s read "this site reaches 1 of 3" 25 times in 20 minutes, and its database door
    refused writes each time. `blind_since`: the end of the first stall noted after that round
    began (the agent keeps it: stall spans merge, and under steady lag their end moves with the
    clock). Bounded by the window from it, so that an agent starved again and again still sees
    a site that died meanwhile, a window late."""
    if not blind_anchored(blind_since, clean_started):
        return False
    return 0 <= now - blind_since <= window  # type: ignore[operator]


def blind_anchored(blind_since: float | None, clean_started: float | None) -> bool:
    """Whether a stall has been noted since the last clean round began (the agent keeps the
    first one's end as `blind_since`; a later stall moves it only once this is False)."""
    return blind_since is not None and (clean_started is None or blind_since > clean_started)


def own_view(site: str, others: Iterable[str], last_ok: Mapping[str, float], postgres_heard: Mapping[str, float],
             found: Mapping[str, failover.ClusterState], now: float, grace: float,
             unanswered: Collection[str] | None = None,
             stalls: Iterable[tuple[float, float]] = (), max_absent: float = math.inf) -> detector.View:
    """The view this agent publishes: for each other site, how long since any of its components
    last answered; for each server a commit waits for, how long its PostgreSQL has been silent;
    each cluster's leader key revision it reads as not Patroni's own.

    A round still running is no silence: gaps within `grace` (one probe round) read 0, and so
    does any gap of a site or server the last completed round heard from (`unanswered`: those it
    did not; None: every one counts). A round that runs late because this agent was starved of
    CPU leaves every stamp old at once; counted, the agent read "this site reaches 1 of 3" for a
    moment and its database door shut every session (seen during a certificate rotation).

    Nor is the time this agent itself was stalled (`stalls`, note_stall) anyone's silence: it was
    not looking. Counted, an agent paused for 0.5 s read every other site silent for the window
    when it resumed, and its site's database door refused writes (bench/detector.py: 32 times in
    6 minutes, with a 0.5 s window). At most `max_absent` is taken off a gap: an agent late again
    and again (starved, not paused) must still see a dead site dead, a window later at most."""
    stalls = tuple(stalls)

    def gap(key: str, since: float) -> float:
        if unanswered is not None and key not in unanswered:
            return 0.0
        silent = now - since - min(absent(stalls, since, now), max_absent)
        return round(silent, 3) if silent > grace else 0.0
    down = {s: gap(s, last_ok.get(s, now)) for s in others}
    silent = {m: gap(m, t) for m, t in postgres_heard.items()}
    bogus = {scope: c.leader_revision for scope, c in found.items() if c.bogus_leader()}
    return detector.View(site, now, down, silent, bogus)


def door_routes(view: detector.View, verdicts: Mapping[str, detector.Verdict],
                found: Mapping[str, failover.ClusterState], site_of: Mapping[str, Mapping[str, str]],
                sites_total: int, drained: frozenset[str], window: float) -> dict[str, dbdoor.Routes]:
    """scope -> where this site's database door sends that cluster's clients: from the verdicts
    and from this agent's own view (a site it has not reached for the detector's `window` gets no
    clients, as a cut link is read).

    Not sooner: refusing a site after one unanswered round bought nothing when it died (its
    clients could write nowhere until the verdict, which needs the window too, and the verdict
    shuts their sessions) and cost writes whenever it had not. Measured (bench/drills.py, flap
    and flap-fast, 2026-12-05): while the primary's links dropped for 0.4-0.5 s at a time, every
    door refused it at each drop and the drills' own clients wrote between drops, 0.59-1.25 s
    after the fault began, while the ordinary client through a door waited 0.79-2.13 s; under 5%
    loss, a lossy site's door refused writes to a living primary four times in two hours."""
    unreachable = {s for s, gap in view.unreachable_for.items() if gap >= window}
    dead = dead_sites(verdicts)
    return {scope: dbdoor.routes(c, site_of.get(scope, {}), dead, unreachable, sites_seen=sites_total - len(unreachable),
                                 sites_total=sites_total, drained=drained)
            for scope, c in found.items()}
