"""The site agent: probes the other sites, publishes its view, and, when it holds the
coordinator lease, performs what the coordinator's tick decides (control/coordinator.py). A thin
asyncio shell: it reads etcd, ticks, and executes the effects. The front door, the database door,
the instances, releases and etcd's maintenance run in loops of their own modules (run.py gathers
them); every loop guards its cycle (control/cycles.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import httpx

from firebreak.control import clusters as clusters_mod
from firebreak.control import coordinator, dbdoor, detector, drills, failover, outages, probes
from firebreak.control.config import AgentConfig
from firebreak.control.coordinator import Memory
from firebreak.control.cycles import Cycles
from firebreak.control.door import DoorKeeper
from firebreak.control.door_haproxy import HaproxyDoorKeeper
from firebreak.control.etcd import KV, Etcd, EtcdError
from firebreak.control.incidents import Incident
from firebreak.control.keys import PatroniKeys
from firebreak.errors import BadValue, Denied, EtcdPermissionDenied

log = logging.getLogger("firebreak.agent")

PROBED = ("etcd", "patroni", "app", "agent")
# A loop that wakes this much later than due, or a probe round that ends this much past its
# timeout, was stalled with the agent; such spans are kept this long (coordinator.own_view).
STALL_SLACK = 0.05
# PostgreSQL probes of one member in flight at once, at most (_pg_send): a window's rounds' worth
# with the default settings.
PG_IN_FLIGHT = 8
STALLS_KEPT = 10.0
# A view that still reads true is put again this many times per freshness period at least: one
# lost put never leaves it stale, and its observer still votes.
VIEW_PUTS_PER_FRESH = 3
# A round asks each site's components in turn (_ask_site); every one of them is asked at least
# this often (the console's and `check --live`'s per-component state), and the first gets this
# share of the probe timeout to answer before the others are asked.
FULL_ROUND_EVERY = 1.0
FIRST_LEAD = 1 / 3
LEASE_KEEPALIVES = 6  # the coordinator lease is kept alive this many times per TTL

__all__ = ["PROBED", "Agent", "AgentState", "Incident"]


@dataclass
class AgentState:
    last_ok: dict[str, float] = field(default_factory=dict)        # site -> last successful probe
    components: dict[str, dict[str, bool]] = field(default_factory=dict)  # site -> component -> ok
    views: dict[str, detector.View] = field(default_factory=dict)
    verdicts: dict[str, detector.Verdict] = field(default_factory=dict)
    coordinator: str | None = None
    is_coordinator: bool = False
    frozen: bool = False
    failovers: int = 0
    etcd_health: dict = field(default_factory=dict)  # alarms, warnings, per-member sizes (maintenance_loop)
    clusters: dict[str, failover.ClusterState] = field(default_factory=dict)  # every cluster, by scope
    instances: dict[str, dict[str, bool]] = field(default_factory=dict)  # service -> site -> answers (instances_loop)
    drained: frozenset[str] = frozenset()  # sites operators evacuated (door_loop reads them)
    # "<scope>/<member>" -> when its PostgreSQL last answered or refused (not silent): primaries
    # and synchronous standbys only, the servers a commit waits for.
    postgres_heard: dict[str, float] = field(default_factory=dict)
    # Sites and servers the last completed probe round got no answer from: only they can read as
    # silent. A round that runs late (this agent starved of CPU) is not their silence.
    unanswered: set[str] = field(default_factory=set)
    round_done: float | None = None  # when the last probe round completed
    # The last round that ran unstalled: when it started, and whom it got no answer from. After
    # a stall, only such a round's misses are silence (coordinator.stalled_since_clean_round).
    clean_round_started: float | None = None
    clean_unanswered: set[str] = field(default_factory=set)
    blind_since: float | None = None  # the end of the first stall noted since that round began
    # Spans in which this agent itself was not running (paused, starved): nobody's silence.
    own_stalls: tuple[tuple[float, float], ...] = ()
    stalls: dict[str, detector.Verdict] = field(default_factory=dict)  # the same keys, by agreement
    cut: set[frozenset[str]] = field(default_factory=set)  # links between living sites seen cut
    memory: Memory = field(default_factory=Memory)  # the coordinator's, between ticks

    @property
    def decisions(self) -> dict[str, str]:
        """cluster -> its last decision's reason."""
        return dict(self.memory.decisions)

    @property
    def last_decision(self) -> str:
        return self.memory.last_decision

    @property
    def open_incidents(self) -> dict[str, Incident]:
        return dict(self.memory.incidents)

    @property
    def outages(self) -> dict[str, outages.Open]:
        """Each service's open outage (as coordinator)."""
        return dict(self.memory.outages)


# Patroni's own default ttl, for a cluster whose /config key was not read: how long a released
# leader's session would live on by itself, and the fence's own lease (Agent._end_session).
SESSION_TTL = 30


class Agent:
    def __init__(self, cfg: AgentConfig, clock=time.time):
        self.cfg = cfg
        self.clock = clock
        self.state = AgentState()
        self.etcd = Etcd(cfg.etcd, timeout=0.5, access=cfg.access())
        # etcd lets only its root defragment or move raft leadership: a separate identity, used
        # for nothing else, and only when the operator gave one.
        self.etcd_admin = Etcd(cfg.etcd, timeout=0.5, access=cfg.access(admin=True)) if cfg.etcd_admin_access else None
        self.http = httpx.AsyncClient(timeout=cfg.detector.probe_timeout)
        self.others = [s for s in cfg.sites if s != cfg.site]
        self._targets = {(s, c): probes.http_probe(getattr(cfg.sites[s], c) if c != "etcd" else
                                                   cfg.sites[s].etcd_probe or cfg.sites[s].etcd, c)
                         for s in self.others for c in PROBED}
        now = clock()
        for s in cfg.sites:
            self.state.last_ok[s] = now
        self.keys = cfg.keys
        self.pkeys = cfg.patroni_keys
        self.metrics = None
        self.cycles = Cycles(log, lambda loop: self.metrics and self.metrics.cycle_error(loop),
                             lambda kind: self.metrics and self.metrics.ignored(kind))
        # A locked etcd and no admin identity: leadership stays where raft puts it.
        self.settings = coordinator.Settings.of(cfg, can_place_etcd_leader=not (self.etcd_admin is None
                                                                                and cfg.etcd_access))
        self.door: DoorKeeper | HaproxyDoorKeeper | None = None  # set by door_loop.run
        self.db_door: dbdoor.DbDoorKeeper | None = None  # set by dbdoor_loop.run
        self.db_door_wake = asyncio.Event()  # the database door follows at once when set
        self._lease = 0  # the coordinator campaign's lease, while this agent has one
        self._lease_kept = 0.0  # when it was granted or last kept alive (time.monotonic)
        self._full_round_at = -FULL_ROUND_EVERY  # when the probe loop last asked every component
        self._first_unanswered: set[str] = set()  # sites whose first component missed its last round
        # Every cluster's keys and its members' sites, learnt as clusters are found (clusters.py).
        self._pkeys: dict[str, PatroniKeys] = {cfg.default_scope: cfg.patroni_keys}
        self._placements: dict[str, dict[str, str]] = {}
        self._site_hosts = clusters_mod.unique_hosts(
            {s: [ep.etcd, ep.patroni, ep.app, ep.agent] for s, ep in cfg.sites.items()})
        self._probe_error: str | None = None  # the last probe error logged (once per kind)
        # member -> its PostgreSQL's probes still in flight (_pg_round): each may answer up to a
        # window after it was sent, rounds after its own.
        self._pg_probes: dict[str, list[asyncio.Future]] = {}
        self._drills_unread = False  # the last read of the declared drills failed (logged once per streak)
        # Wakes of a primary's Patroni and released sessions being ended, under way (kept from GC).
        self._background: set[asyncio.Task] = set()

    # -- probing -----------------------------------------------------------------------------

    async def _probe(self, site: str, component: str, timeout: float | None = None) -> bool | Exception:
        # The component's own process must answer, not just its kernel (control/probes.py): a
        # paused site completes handshakes. A bare request on a fresh connection, not an HTTP
        # client: an httpx request per probe once cost the three agents a fifth of a core.
        try:
            return await probes.ask(self._targets[(site, component)],
                                    self.cfg.detector.probe_timeout if timeout is None else timeout)
        except Exception as e:  # counted as no answer by the round, which logs it
            return e

    async def _ask_site(self, site: str, full: bool) -> dict[str, bool | Exception]:
        """component -> whether it answered (or what its probe raised), for the components asked
        this round. Every one, each with the whole timeout, in a full round and while the site's
        first component (PROBED's first, etcd's listener: Go answers it, no Python process is
        woken) did not answer in its last round. Otherwise that one first, and the others only
        when it has not answered within FIRST_LEAD of the timeout, by the same deadline. Any
        answer vouches for the site, so the verdicts are those of asking all four; asking all
        four every 0.1 s woke each site's Patroni, app and agent 20 times a second each, for
        nothing. (The others, asked with what the first left of the timeout, of a site 80 ms
        away whose etcd hung, read silent round after round: the site read dead.)"""
        timeout = self.cfg.detector.probe_timeout
        if full or site in self._first_unanswered:
            answers = dict(zip(PROBED, await asyncio.gather(*(self._probe(site, c) for c in PROBED))))
            if answers[PROBED[0]] is True:
                self._first_unanswered.discard(site)
            else:
                self._first_unanswered.add(site)
            return answers
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = asyncio.ensure_future(self._probe(site, PROBED[0]))
        try:
            await asyncio.wait({first}, timeout=timeout * FIRST_LEAD)
        except BaseException:
            first.cancel()
            raise
        if first.done() and first.result() is True:
            return {PROBED[0]: True}
        self._first_unanswered.add(site)
        left = max(0.0, deadline - loop.time())
        answers = await asyncio.gather(first, *(self._probe(site, c, left) for c in PROBED[1:]))
        return dict(zip(PROBED, answers))

    async def probe_loop(self) -> None:
        interval = self.cfg.detector.probe_interval
        while True:
            started = self.clock()
            with self.cycles.guard("probe"):
                full = abs(started - self._full_round_at) >= FULL_ROUND_EVERY
                if full:
                    self._full_round_at = started
                site_jobs = {s: self._ask_site(s, full) for s in self.others}
                watched = self._commit_path_postgres()
                sent = self._pg_send(watched)
                # One gather: a silent site and a silent primary cost one probe timeout, not two.
                # A probe that raises (a host name the resolver refuses) is no answer: the round
                # still completes, or `unanswered` would freeze and hide a real outage.
                answers = await asyncio.gather(*site_jobs.values(), self._pg_wait(sent), return_exceptions=True)
                for a in answers:
                    if isinstance(a, BaseException) and not isinstance(a, Exception):
                        raise a   # a cancellation ends the loop as before
                asked = {(s, c): a for s, comps in zip(site_jobs, answers)
                         for c, a in (comps.items() if isinstance(comps, dict) else ((c, comps) for c in PROBED))}
                pg_answers = self._pg_harvest()
                errors = [(t, a) for t, a in [*asked.items(), *pg_answers.items()] if isinstance(a, BaseException)]
                if errors and repr(errors[0]) != self._probe_error:
                    log.warning("probing %s failed with an error (counted as no answer): %r", *errors[0])
                self._probe_error = repr(errors[0]) if errors else None
                results = {k: a is True for k, a in asked.items()}
                pg_results = {k: a if isinstance(a, str) else probes.REFUSED for k, a in pg_answers.items()}
                now = self.clock()
                # Timeouts bound a round: one that ends later than that was stalled with the
                # agent (its probes' timeouts fired once it ran again), not slow.
                stalled = now - started > self.cfg.detector.probe_timeout + STALL_SLACK
                if stalled:
                    self._stalled(started + self.cfg.detector.probe_timeout + STALL_SLACK, now)
                self.state.round_done = now
                heard = self.state.postgres_heard
                for m in list(heard):
                    if m not in watched:
                        del heard[m]  # no longer one a commit waits for: its silence decides nothing
                for m, result in pg_results.items():
                    if result != probes.SILENT or m not in heard:
                        heard[m] = now
                    if result == probes.SILENT:
                        self.state.unanswered.add(m)
                    else:
                        self.state.unanswered.discard(m)
                for s in self.others:
                    comps = {c: results[(s, c)] for c in PROBED if (s, c) in results}  # asked this round
                    self.state.components[s] = {**self.state.components.get(s, {}), **comps}
                    # Stamped when the round ends, as the view is read between rounds: a stamp of
                    # the answer's own time, written only when a round that waited out another
                    # site's silent probes ends, made a reachable site look 0.6 s late, past the
                    # 0.5 s grace (measured: the database doors flickered shut with one site off).
                    # Only this round's answers vouch for the site.
                    if any(comps.values()):
                        self.state.last_ok[s] = now
                        self.state.unanswered.discard(s)
                    else:
                        self.state.unanswered.add(s)
                    if self.metrics:
                        for c, ok in comps.items():
                            self.metrics.probe(s, c, ok)
                self.state.last_ok[self.cfg.site] = now
                if not stalled:
                    self.state.clean_round_started, self.state.clean_unanswered = started, set(self.state.unanswered)
            await self.sleep(max(0.0, interval - (self.clock() - started)))

    def _pg_send(self, watched: dict[str, probes.Probe]) -> list[asyncio.Future]:
        """Send this round's probe of each watched PostgreSQL, leaving earlier ones in flight.
        Each may take the detector's window to answer, not one probe timeout: a postmaster answers
        by forking, and on a machine whose every core is busy that took longer than 0.1 s round
        after round; a living primary read silent for the window and was failed over (bench/
        detector.py, two hours of stress, 2026-12-06). A late answer is still an answer; a storage
        hang or a stopped postmaster answers none and reads silent a window after its last answer,
        as before (a backend it forked just before it stopped may still answer, up to a window
        late, where the probe timeout cut that off before)."""
        d = self.cfg.detector
        for m in [m for m in self._pg_probes if m not in watched]:
            for t in self._pg_probes.pop(m):
                t.cancel()   # no longer one a commit waits for
        # one per round of a window, and never many: a 60 s window must not mean 600 sockets
        in_flight = min(math.ceil(d.window / d.probe_interval) + 1, PG_IN_FLIGHT)
        sent = []
        for m, p in watched.items():
            flying = self._pg_probes.setdefault(m, [])
            if len(flying) < in_flight:
                flying.append(asyncio.ensure_future(probes.outcome(p, d.window)))
                sent.append(flying[-1])
        return sent

    async def _pg_wait(self, sent: list[asyncio.Future]) -> None:
        """This round waits for its own probes as long as for the sites' (one probe timeout)."""
        if sent:
            await asyncio.wait(sent, timeout=self.cfg.detector.probe_timeout)

    def _pg_harvest(self) -> dict[str, str | BaseException]:
        """member -> what its probes that came back since the last round say: ANSWERED or REFUSED
        if any did with that (a refusal: not running, Patroni's business), else SILENT, also while
        they are still in flight. Those that came back are dropped."""
        out: dict[str, str | BaseException] = {}
        for m, flying in self._pg_probes.items():
            back = [t for t in flying if t.done() and not t.cancelled()]
            said = [t.exception() or t.result() for t in back]
            self._pg_probes[m] = [t for t in flying if not t.done()]
            heard = [a for a in said if a != probes.SILENT]
            out[m] = (probes.ANSWERED if probes.ANSWERED in heard else heard[0]) if heard else probes.SILENT
        return out

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep, noting how much later than due this agent woke: its own stall. Every
        loop that reads this agent's own view sleeps so (or calls woke), or the first to run after
        a pause reads it before the stall is noted."""
        due = self.clock() + seconds
        await asyncio.sleep(seconds)
        self.woke(due)

    def woke(self, due: float) -> None:
        """A loop due to wake at `due` runs now: lateness past STALL_SLACK was a stall (only what
        is past it: ordinary lateness, counted by five loops, would add up to most of the time)."""
        if (now := self.clock()) - due > STALL_SLACK:
            self._stalled(due + STALL_SLACK, now)

    def _stalled(self, since: float, until: float) -> None:
        self.state.own_stalls = coordinator.note_stall(self.state.own_stalls, since, until, keep=STALLS_KEPT)
        if not coordinator.blind_anchored(self.state.blind_since, self.state.clean_round_started):
            self.state.blind_since = until

    def _commit_path_postgres(self) -> dict[str, probes.Probe]:
        """The probe of each server a commit waits for (clusters.commit_path), as its member key
        tells where its PostgreSQL listens."""
        out = {}
        for key, (scope, name) in clusters_mod.commit_path(self.state.clusters).items():
            m = self.state.clusters[scope].members.get(name)
            if m is not None and (p := probes.postgres_probe(m.conn_url)) is not None:
                out[key] = p
        return out

    def my_view(self) -> detector.View:
        d, now = self.cfg.detector, self.clock()
        # A probe loop that has completed no round for a whole window vouches for nothing: every
        # stamp counts again, as it did before rounds were tracked.
        rounds_going = self.state.round_done is not None and now - self.state.round_done <= d.window
        unanswered = self.state.unanswered if rounds_going else None
        if coordinator.stalled_since_clean_round(self.state.blind_since, self.state.clean_round_started, now, d.window):
            unanswered = self.state.clean_unanswered
        return coordinator.own_view(self.cfg.site, self.others, self.state.last_ok, self.state.postgres_heard,
                                    self.state.clusters, now, grace=d.probe_interval + d.probe_timeout,
                                    unanswered=unanswered, stalls=self.state.own_stalls, max_absent=d.window)

    # -- publishing views --------------------------------------------------------------------

    async def publish_loop(self) -> None:
        lease = 0
        last_keepalive = 0.0
        told: detector.View | None = None  # the view last put, while it stands
        d = self.cfg.detector
        heartbeat = max(d.probe_interval, d.fresh / VIEW_PUTS_PER_FRESH)
        while True:
            with self.cycles.guard("publish"):
                try:
                    if not lease:
                        lease, told = await self.etcd.grant(d.view_lease_ttl), None
                    view = self.my_view()
                    # A put is a raft entry on every member: put again only when what was put no
                    # longer reads true (detector.still_told: a gap grows with the view's age as
                    # it is read) or every heartbeat, well inside `fresh`. Every probe interval,
                    # views were most of etcd's writes on a quiet lab.
                    if told is None or view.published - told.published >= heartbeat or \
                            not detector.still_told(told, view, self.settings.detector):
                        told = None
                        await self.etcd.put(self.keys.view(self.cfg.site), json.dumps(asdict(view)), lease=lease)
                        told = view
                    if self.clock() - last_keepalive > 1.0:
                        if await self.etcd.keepalive(lease) <= 0:
                            lease = 0
                        last_keepalive = self.clock()
                except EtcdError as e:
                    log.warning("publishing view failed: %s", e)
                    lease = 0
            await self.sleep(self.cfg.detector.probe_interval)

    # -- the coordinator: read, tick, execute ------------------------------------------------

    async def coordinator_loop(self) -> None:
        while True:
            try:
                await self.coordinator_cycle()
            except EtcdError as e:
                # Cut off from etcd's quorum: we may not be coordinator any more, so we act on nothing.
                if self.state.is_coordinator:
                    log.warning("etcd unavailable, standing down: %s", e)
                self.state.is_coordinator = False
                self._lease = 0
            except Exception:
                # A cycle that failed for another reason acted on nothing; a coordinator that keeps
                # failing must not keep the lease from an agent that could act (a newer version, one
                # that reads a bad value differently), so it resigns at once.
                self.cycles.failed("coordinator")
                if self._lease:
                    try:
                        await self.etcd.revoke(self._lease)
                    except EtcdError:
                        pass  # the lease then runs out by itself
                self.state.is_coordinator = False
                self._lease = 0
            await self.sleep(self.cfg.detector.probe_interval)

    async def coordinator_cycle(self) -> None:
        """Read, tick, execute. A tick that moves the coordinator key (campaign, resign) decides
        nothing else: the key is moved, read again, and the tick runs again, so an agent that
        wins the key acts in the same cycle."""
        # Everything a tick reads, at one revision (Etcd.get_ranges).
        n = len(prefixes := self._cluster_prefixes())
        read = await self.etcd.get_ranges([*((p, True) for p in prefixes), (self.keys.views, True),
                                           *self._coordinator_ranges()])
        found = self._clusters_from(read[:n])
        self.state.clusters = found
        views = self._views_from(read[n])
        about_lease = self._about_lease(read[n + 1])
        for attempt in range(2):
            seen = await self._seen(found, views, about_lease)
            ready = coordinator.tick(self.settings, seen, self.state.memory)
            self.state.memory = ready.memory
            self.state.views, self.state.verdicts = views, dict(ready.verdicts)
            self.state.stalls, self.state.cut = dict(ready.stalls), set(ready.cut)
            moves = [e for e in ready.effects if isinstance(e, (coordinator.Campaign, coordinator.Resign))]
            if not moves:
                await self.perform(ready.effects, found)
                return
            if attempt == 0:
                await self._move_lease(moves[0])
                about_lease = self._about_lease((await self.etcd.get_ranges(self._coordinator_ranges()))[0])

    def _coordinator_ranges(self) -> list[tuple[str, bool | str]]:
        """What _seen reads: the coordinator key, and what only the coordinator acts on, in one
        range (Keys.coordination_span): a request fewer every tick is CPU on every site."""
        return [self.keys.coordination_span]

    def _about_lease(self, span: list[KV]) -> tuple[list[KV], list[KV], list[KV]]:
        """The coordinator key, `frozen` and the drills, from the span's KVs."""
        return ([kv for kv in span if kv.key == self.keys.coordinator], [kv for kv in span if kv.key == self.keys.frozen],
                [kv for kv in span if kv.key.startswith(self.keys.drills)])

    async def _seen(self, found: dict[str, failover.ClusterState], views: dict[str, detector.View],
                    about_lease: tuple[list[KV], ...]) -> coordinator.Seen:
        """The coordinator key, and what only the coordinator reads: `frozen`, the drills declared
        (as read by _coordinator_ranges), and the ledger when it has just taken over (to carry on
        the incidents and outages left open there)."""
        holder_read, frozen_read, drills_read = about_lease
        holder = holder_read[0] if holder_read else None
        self.state.coordinator = holder.value if holder else None
        mine = bool(holder and self._lease and holder.lease == self._lease)
        # The read above shows the lease alive (etcd deletes the key with it); a keepalive six
        # times per TTL keeps it so through a pause of most of the TTL. One every tick was a
        # request every 0.1 s for nothing. Timed on the monotonic clock: a wall clock stepped
        # back would stop the keepalives until it caught up, and the lease would run out.
        if mine and time.monotonic() - self._lease_kept >= self.cfg.detector.coordinator_lease_ttl / LEASE_KEEPALIVES:
            if await self.etcd.keepalive(self._lease) <= 0:
                self._lease, mine = 0, False
            self._lease_kept = time.monotonic()
        self.state.is_coordinator = mine
        ledger = None
        declared: dict[str, drills.Drill] = {}
        if mine:
            self.state.frozen = bool(frozen_read)
            declared = self._drills_from(drills_read)
            if self.state.memory.needs_ledger:
                try:
                    ledger = tuple(kv.value for kv in await self.etcd.get_prefix(self.keys.ledger))
                except EtcdError as e:
                    # The tick decides and fails over without it, and the next cycle reads it again.
                    log.warning("reading the ledger on taking over failed (failovers go on; the record waits): %s", e)
        return coordinator.Seen(
            now=self.clock(), views=views, clusters=found, site_of={scope: self.site_of(scope) for scope in found},
            holder=self.state.coordinator, mine=mine, has_lease=bool(self._lease),
            frozen=self.state.frozen if mine else False, ledger=ledger, instances=self.state.instances,
            drills=declared)

    async def _move_lease(self, move: coordinator.Campaign | coordinator.Resign) -> None:
        if isinstance(move, coordinator.Campaign):
            if not self._lease:
                self._lease = await self.etcd.grant(self.cfg.detector.coordinator_lease_ttl)
                self._lease_kept = time.monotonic()
            if await self.etcd.create(self.keys.coordinator, self.cfg.site, lease=self._lease):
                log.info("became coordinator")
        else:
            await self.etcd.revoke(self._lease)
            log.info("resigned as coordinator: a living site whose loss would need no action "
                     "is better placed to act on the loss of this one")
            self._lease = 0

    async def perform(self, effects: tuple[coordinator.Effect, ...], found: dict[str, failover.ClusterState]) -> None:
        """Execute a tick's effects in order; every Failover at once, where the first one stands."""
        failovers = [e for e in effects if isinstance(e, coordinator.Failover)]
        for effect in effects:
            match effect:
                case coordinator.SteerDoors():
                    self.db_door_wake.set()
                case coordinator.OpenIncident(incident) | coordinator.CloseIncident(incident):
                    await self.save_incident(incident)
                    if incident.drill and isinstance(effect, coordinator.OpenIncident):
                        log.info("ledger: %s lost during drill %s, declared over it: recorded as the drill's, "
                                 "not as an outage (the failover goes on as for a real loss)", incident.site,
                                 incident.drill)
                case coordinator.PlaceEtcdLeader():
                    await self.place_etcd_leader(effect)
                case coordinator.Decided(scope, reason):
                    log.info("decision for %s: %s", scope, reason)
                case coordinator.Flaps(links):
                    log.info("flap detector: %s", "links flapping: " + ", ".join(sorted("–".join(sorted(link))
                             for link in links)) if links else "no link flaps")
                case coordinator.Failover() if effect is failovers[0]:
                    await asyncio.gather(*(self.execute(f.decision, found[f.scope], f.scope) for f in failovers))
                case coordinator.Failover():
                    pass  # run with the first
                case coordinator.RecordOutage(w):
                    await self.etcd.put(self.keys.ledger_service_entry(w.start, w.service),
                                        json.dumps(w.entry(self.cfg.site)))
                    log.info("ledger: %s %s (%s)%s", w.service, "out since %.3f" % w.start if w.end is None
                             else "back after %.2f s" % (w.end - w.start), w.cause,
                             f"; drill {w.drill}'s, not an outage" if w.drill else "")
                case coordinator.Campaign() | coordinator.Resign():
                    raise AssertionError("the coordinator key moves before any other effect")

    # -- reading etcd ------------------------------------------------------------------------

    async def read_views(self) -> dict[str, detector.View]:
        return self._views_from(await self.etcd.get_prefix(self.keys.views))

    def _views_from(self, kvs: list[KV]) -> dict[str, detector.View]:
        views = {}
        for kv in kvs:
            site = kv.key[len(self.keys.views):]
            if site not in self.cfg.sites or site == self.cfg.site:
                continue  # not a site of this estate (the detector would ignore it), or our own (below)
            try:
                views[site] = detector.View.from_value(site, kv.value)
            except BadValue as e:
                self.cycles.ignore("view", failover.Ignored(kv.key, kv.mod_revision, str(e)))
        views[self.cfg.site] = self.my_view()  # our own, fresher than what we published
        return views

    async def read_drills(self) -> dict[str, drills.Drill]:
        """site -> the drill declared over it (keys.drill). A declaration that does not parse is
        ignored and counted, and one that cannot be read is no drill either: what it can do is
        turn an outage into a rehearsal, so when in doubt the outage is recorded as real, and a
        failover never waits for it."""
        try:
            kvs = await self.etcd.get_prefix(self.keys.drills)
        except EtcdError as e:
            if not self._drills_unread:
                log.warning("reading the declared drills failed; recording every outage as real until they "
                            "can be read: %s", e)
            self._drills_unread = True
            return {}
        return self._drills_from(kvs)

    def _drills_from(self, kvs: list[KV]) -> dict[str, drills.Drill]:
        self._drills_unread = False
        declared = {}
        for kv in kvs:
            site = kv.key[len(self.keys.drills):]
            if site not in self.cfg.sites:
                continue  # not a site of this estate: nothing here could be recorded under it
            try:
                declared[site] = drills.Drill.from_value(site, kv.value, kv.lease)
            except BadValue as e:
                self.cycles.ignore("drill", failover.Ignored(kv.key, kv.mod_revision, str(e)))
        return declared

    async def read_clusters(self) -> dict[str, failover.ClusterState]:
        """Every cluster this agent protects, by scope: one request, a range per namespace."""
        return self._clusters_from(await self.etcd.get_ranges([(p, True) for p in self._cluster_prefixes()]))

    def _cluster_prefixes(self) -> list[str]:
        """The prefix of each Patroni namespace this agent protects (its one cluster's root)."""
        return [ns.rstrip("/") + "/" for ns in self.cfg.patroni_namespaces] or [self.pkeys.root]

    def _clusters_from(self, read: list[list[KV]]) -> dict[str, failover.ClusterState]:
        """The clusters in what was read of _cluster_prefixes, in that order."""
        if not self.cfg.patroni_namespaces:
            pk = self.pkeys
            kvs = {kv.key: kv for kv in read[0]}
            found = {self.cfg.default_scope: (pk, clusters_mod.cluster_state(kvs, pk, self.cfg.default_scope))}
        else:
            found = {}
            for ns, got in zip(self.cfg.patroni_namespaces, read):
                found.update(clusters_mod.clusters_under({kv.key: kv for kv in got}, ns))
        for scope, (pk, c) in found.items():
            for bad in c.ignored:
                self.cycles.ignore("patroni", bad)
            self._pkeys[scope] = pk
            self._placements[scope] = clusters_mod.place_members(c, self.cfg.site_of_member, self._site_hosts,
                                                                 self._placements.get(scope))
        return {scope: c for scope, (_, c) in found.items()}

    async def read_cluster(self, scope: str | None = None) -> failover.ClusterState:
        """One cluster: `scope`, or the first (the only one, for a single-cluster agent)."""
        found = await self.read_clusters()
        if scope is None:
            return self._main(found)
        if scope not in found:
            raise Denied(404, f"cluster: no Patroni cluster {scope!r}; clusters are {', '.join(found) or 'none'}")
        return found[scope]

    def _main(self, found: dict[str, failover.ClusterState]) -> failover.ClusterState:
        return found.get(self.cfg.default_scope) or next(iter(found.values()), None) or failover.ClusterState(
            None, 0, None, (), {}, self.cfg.default_scope)

    def site_of(self, scope: str) -> dict[str, str]:
        """member -> site for a cluster."""
        return self._placements.get(scope) or self.cfg.site_of_member

    # -- executing the coordinator's effects --------------------------------------------------

    async def execute(self, decision: failover.Decision, cluster: failover.ClusterState,
                      scope: str | None = None) -> None:
        pk = self._pkeys.get(scope or self.cfg.default_scope, self.pkeys)
        for action in decision.actions:
            match action:
                case failover.FenceApi():
                    ok = await self.etcd.cas_put(pk.member(action.member), action.value, action.revision,
                                                 lease=action.lease)
                    log.info("pointed dead member %s's REST API at a refusing port: %s", action.member,
                             "done" if ok else "it changed meanwhile, skipped")
                case failover.DropMember():
                    ok = await self.etcd.cas_delete(pk.member(action.member), action.revision)
                    log.warning("dropped synchronous standby %s's member key: %s", action.member,
                                "done" if ok else "it changed meanwhile, skipped")
                    if ok:
                        # Not awaited: the coordinator's tick must not wait on the primary's
                        # Patroni. When the primary's site is the one going silent, the wake waits
                        # out its timeout, and a verdict due meanwhile waited with it (a power cut
                        # measured 1 s slower for it).
                        self._in_background(self._wake_primary(cluster))
                case failover.DeleteLeader():
                    await self._release_leader(action, pk, scope or self.cfg.default_scope, cluster.ttl)
                case failover.RestoreHistory():
                    ok = await self.etcd.cas_put(pk.history, action.value, action.revision)
                    log.warning("no leader %g s after a release: took the release's line back out of %s's "
                                "/history, so its old primary may take the key again: %s", failover.FENCE_HOLD,
                                scope or self.cfg.default_scope, "done" if ok else "it changed meanwhile, skipped")

    async def _wake_primary(self, cluster: failover.ClusterState) -> None:
        """Have the primary's Patroni run its loop now rather than at its next tick (up to
        loop_wait later): it then picks a living synchronous standby at once, and commits waiting
        for the dead one go through. Patroni wakes its loop on any PATCH /config it accepts; one
        that sets ttl to its current value changes nothing."""
        leader = cluster.members.get(cluster.leader or "")
        if leader is None or not leader.api_url or cluster.ttl is None or not self.cfg.patroni_user:
            return
        url = leader.api_url.removesuffix("/patroni") + "/config"
        try:
            r = await self.http.patch(url, json={"ttl": cluster.ttl}, timeout=1.0,
                                      auth=(self.cfg.patroni_user, self.cfg.patroni_password))
            if r.status_code != 200:
                log.info("could not wake %s's Patroni (HTTP %d); it acts at its next loop", cluster.leader,
                         r.status_code)
        except httpx.HTTPError as e:
            log.info("could not wake %s's Patroni (%r); it acts at its next loop", cluster.leader, e)

    async def _release_leader(self, action: failover.DeleteLeader, pk: PatroniKeys, scope: str,
                              ttl: int | None) -> None:
        if action.history is None:
            ok = await self.etcd.cas_delete(pk.leader, action.revision)
        else:
            # One transaction: a moment with the key gone and the history not yet fenced is the
            # moment the old primary's Patroni, alive after all, would take the key back.
            try:
                ok = await self.etcd.put_and_delete(pk.history, action.history, action.history_revision,
                                                    pk.leader, action.revision)
            except EtcdPermissionDenied as e:
                # An estate locked before the agents wrote the history: release all the same.
                log.warning("may not write %s (%s): releasing the key without the history fence; grant the "
                            "agents' roles readwrite on it (docs/DEPLOY.md, `firebreak pki users` does)",
                            pk.history, e)
                ok = await self.etcd.cas_delete(pk.leader, action.revision)
        if ok:
            self.state.failovers += 1
            if self.metrics:
                self.metrics.failover()
            site = self.site_of(scope).get(action.member, action.member)
            done = f"released leader key of {scope}/{action.member} at {self.clock():.3f}"
            self.state.memory, inc = coordinator.note_failover(self.state.memory, site, done)
            if inc is not None:
                await self.save_incident(inc)
        log.warning("released leader key of %s (%s): %s", scope, action.member,
                    "done" if ok else "it or the history changed meanwhile (Patroni acted first)")
        if ok and action.lease:
            # Only after the delete (a key that changed meanwhile is a living Patroni's), and not
            # awaited: the race the delete let run needs nothing more from this tick.
            self._in_background(self._end_session(action.member, action.lease, pk, ttl or SESSION_TTL,
                                                  fenced=action.history is not None))

    async def _end_session(self, member: str, lease: int, pk: PatroniKeys, ttl: int, fenced: bool = False) -> None:
        """Revoke a released leader's session lease (failover.DeleteLeader says why), its fenced
        member key moved first onto a lease of the agent's own that runs out after `ttl`: with
        the key gone, Patroni's leader race would take the member's REST API from /failsafe, the
        real one, and candidates would wait on a dead host again (the fence's whole point). Tried
        until done or the lease would have run out by itself (`ttl`): one etcd hiccup must not
        leave the hole open. If the same Patroni took the key again meanwhile under the same
        lease, this ends that too: its site was judged dead, and standbys refuse to promote while
        it answers.

        With the history `fenced`, the lease is revoked only once another member holds the key: a
        revoked lease sends the old primary, if its read predates the delete, to win the key
        back in a create-if-absent transaction that never asks whether it is behind. The member
        key moves at once all the same (its lease may run out sooner than the wait). No other
        member by the time the fence comes out (failover.stale_fence), and nothing is revoked:
        the old primary may then rightly take the key again under it."""
        deadline = time.monotonic() + ttl
        key = pk.member(member)
        why = "it kept changing"
        try:
            if fenced:
                try:
                    await self._move_member_key(key, lease, ttl)
                except EtcdError:
                    pass  # moved again below, with retries, before the revoke
                if not await self._until_another_leader(member, pk, min(ttl, failover.FENCE_HOLD - 1.0)):
                    log.warning("no other member took %s's released key: its session lease %x is left alone, as "
                                "the history fence comes out (failover.stale_fence)", member, lease)
                    return
            while time.monotonic() < deadline:
                try:
                    if not await self._move_member_key(key, lease, ttl):
                        continue  # rewritten meanwhile: read it again
                    await self.etcd.revoke(lease)
                    log.info("revoked %s's session lease %x: if it comes back, its Patroni must win the leader key "
                             "again", member, lease)
                    return
                except EtcdError as e:
                    if "lease not found" in str(e):
                        return  # ran out, or revoked by an earlier try whose answer was lost
                    why = str(e)
                    await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            log.warning("agent stopping: %s's session lease %x not revoked", member, lease)
            raise
        log.warning("could not revoke %s's session lease %x (%s): back within Patroni's ttl, its Patroni may "
                    "read a stale copy of the deleted key as its own", member, lease, why)

    async def _move_member_key(self, key: str, lease: int, ttl: int) -> bool:
        """Move a member key still on `lease` onto a lease of the agent's own (`ttl`); False when it
        was rewritten meanwhile."""
        kv = await self.etcd.get(key)
        if kv is None or kv.lease != lease:
            return True
        return await self.etcd.cas_put(key, kv.value, kv.mod_revision, lease=await self.etcd.grant(ttl))

    async def _until_another_leader(self, member: str, pk: PatroniKeys, within: float) -> bool:
        """Whether the leader key named a member other than `member` within `within` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                kv = await self.etcd.get(pk.leader)
                if kv is not None and kv.value != member:
                    return True
            except EtcdError:
                pass
            await asyncio.sleep(0.1)
        return False

    async def place_etcd_leader(self, place: coordinator.PlaceEtcdLeader) -> None:
        try:
            leader_id, members = await self.etcd.leader_and_members()
        except EtcdError:
            return
        move = coordinator.etcd_move(place, leader_id, members)
        if move is None:
            return
        try:
            await (self.etcd_admin or self.etcd).move_leader(move.leader, move.target_id)
            log.info("moved etcd leadership from %s to %s (%s)", move.from_site, move.to_site, move.why)
        except EtcdError as e:
            log.warning("could not move etcd leadership to %s: %s", move.to_site, e)

    async def save_incident(self, inc: Incident) -> None:
        # The ledger lives in etcd: replicated to every site, it survives the loss of any one.
        await self.etcd.put(self.keys.ledger_entry(inc.start, inc.site),
                            json.dumps(inc.entry(self.cfg.site, estate=bool(self.cfg.services))))

    # -- what the console shows ----------------------------------------------------------------

    def estate(self) -> dict:
        """The running estate as this agent sees it now: which site runs which etcd member,
        cluster members, service instances and agents. `check --live` analyses it."""
        dead = coordinator.dead_sites(self.state.verdicts)

        def up(site: str, component: str) -> bool:
            if site in dead:
                return False
            return True if site == self.cfg.site else bool(self.state.components.get(site, {}).get(component))
        dd = self.cfg.db_door
        doors = set(dd.ports(self.cfg.default_scope)) if dd else set()
        clusters = {}
        for scope, c in self.state.clusters.items():
            site_of = self.site_of(scope)
            clusters[scope] = {
                "primary_site": site_of.get(c.leader) if c.leader else None,
                "synchronous": bool(c.sync_standbys) or c.sync_leader is not None,
                # sync | quorum | async: what `check --live --against` compares with a topology
                "replication": "quorum" if c.quorum_active else
                               "sync" if c.sync_standbys or c.sync_leader is not None else "async",
                "doors": scope in doors,
                "members": {n: {"site": site_of.get(n), "role": m.role, "state": m.state}
                            for n, m in c.members.items()},
            }
        return {
            "site": self.cfg.site, "sites": list(self.cfg.sites), "frozen": self.state.frozen,
            "etcd": {s: up(s, "etcd") for s in self.cfg.sites},
            "agents": {s: up(s, "agent") for s in self.cfg.sites},
            "clusters": clusters,
            "services": {name: {"instances": {s: (self.state.instances.get(name, {}).get(s, False) and s not in dead)
                                              for s in svc.sites},
                                "databases": list(svc.databases), "calls": list(svc.calls)}
                         for name, svc in self.cfg.services.items()},
        }

    def _in_background(self, work) -> None:
        """Run `work` without waiting for it, kept from GC until done and cancelled by close()."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        # Wakes and session ends still under way: stopped before the clients they use close
        # under them (an error of a closed client is neither an HTTP nor an etcd error).
        flying = [t for ts in self._pg_probes.values() for t in ts]
        for task in list(self._background) + flying:
            task.cancel()
        await asyncio.gather(*self._background, *flying, return_exceptions=True)
        await self.etcd.close()
        if self.etcd_admin is not None:
            await self.etcd_admin.close()
        await self.http.aclose()
