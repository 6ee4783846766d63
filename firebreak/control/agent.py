"""The site agent: probes the other sites, publishes its view, and, when it holds the
coordinator lease, turns agreed verdicts into failover actions. A thin asyncio shell around
detector.verdicts() and failover.decide()."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field

import httpx

from firebreak.control import clusters as clusters_mod
from firebreak.control import dbdoor, detector, failover, maintenance, ops, outages, probes
from firebreak.control.cycles import Cycles
from firebreak.control.door import DoorKeeper, admin_listen, dial_of, door_config
from firebreak.control.placement import coordination_move, etcd_leader_target
from firebreak.control.config import AgentConfig
from firebreak.control.etcd import Etcd, EtcdError
from firebreak.control.keys import PatroniKeys
from firebreak.errors import BadValue, Denied

log = logging.getLogger("firebreak.agent")

PROBED = ("etcd", "patroni", "app", "agent")


@dataclass
class Incident:
    site: str
    start: float
    end: float | None = None
    kind: str = "site-down"
    detail: str = ""
    failover: str = ""


@dataclass
class AgentState:
    last_ok: dict[str, float] = field(default_factory=dict)        # site -> last successful probe
    components: dict[str, dict[str, bool]] = field(default_factory=dict)  # site -> component -> ok
    views: dict[str, detector.View] = field(default_factory=dict)
    verdicts: dict[str, detector.Verdict] = field(default_factory=dict)
    coordinator: str | None = None
    is_coordinator: bool = False
    last_decision: str = ""
    decisions: dict[str, str] = field(default_factory=dict)  # cluster -> its last decision's reason
    frozen: bool = False
    failovers: int = 0
    open_incidents: dict[str, Incident] = field(default_factory=dict)
    etcd_health: dict = field(default_factory=dict)  # alarms, warnings, per-member sizes (maintenance_loop)
    clusters: dict[str, failover.ClusterState] = field(default_factory=dict)  # every cluster, by scope
    instances: dict[str, dict[str, bool]] = field(default_factory=dict)  # service -> site -> answers (instances_loop)
    outages: dict[str, outages.Open] = field(default_factory=dict)  # each service's open outage (coordinator)
    drained: frozenset[str] = frozenset()  # sites operators evacuated (door_loop reads them)
    # "<scope>/<member>" -> when its PostgreSQL last answered or refused (not silent): primaries
    # and synchronous standbys only, the servers a commit waits for.
    postgres_heard: dict[str, float] = field(default_factory=dict)
    stalls: dict[str, detector.Verdict] = field(default_factory=dict)  # the same keys, by agreement
    cut: set[frozenset[str]] = field(default_factory=set)  # links between living sites seen cut


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
        self.door: DoorKeeper | None = None
        self.db_door: dbdoor.DbDoorKeeper | None = None
        self._db_door_wake = asyncio.Event()
        self._app_writes_to: str | None = None  # where this site's app's writes went, as last told
        self._background: set[asyncio.Task] = set()
        self._placed_at = 0.0
        # Every cluster's keys and its members' sites, learnt as clusters are found (clusters.py).
        self._pkeys: dict[str, PatroniKeys] = {cfg.default_scope: cfg.patroni_keys}
        self._placements: dict[str, dict[str, str]] = {}
        self._outages_adopted = False
        self._site_hosts = clusters_mod.unique_hosts(
            {s: [ep.etcd, ep.patroni, ep.app, ep.agent] for s, ep in cfg.sites.items()})

    # -- probing -----------------------------------------------------------------------------

    async def _probe(self, site: str, component: str) -> bool:
        # The component's own process must answer, not just its kernel (control/probes.py): a
        # paused site completes handshakes. A bare request on a fresh connection, not an HTTP
        # client: an httpx request per probe once cost the three agents a fifth of a core.
        return await probes.ask(self._targets[(site, component)], self.cfg.detector.probe_timeout)

    async def probe_loop(self) -> None:
        interval = self.cfg.detector.probe_interval
        while True:
            started = self.clock()
            with self.cycles.guard("probe"):
                jobs = {(s, c): self._probe(s, c) for s in self.others for c in PROBED}
                watched = self._commit_path_postgres()
                pg_jobs = {m: probes.outcome(p, self.cfg.detector.probe_timeout) for m, p in watched.items()}
                # One gather: a silent site and a silent primary cost one probe timeout, not two.
                answers = await asyncio.gather(*jobs.values(), *pg_jobs.values())
                results = dict(zip(jobs, answers[:len(jobs)]))
                pg_results = dict(zip(pg_jobs, answers[len(jobs):]))
                now = self.clock()
                heard = self.state.postgres_heard
                for m in list(heard):
                    if m not in watched:
                        del heard[m]  # no longer one a commit waits for: its silence decides nothing
                for m, result in pg_results.items():
                    if result != probes.SILENT or m not in heard:
                        heard[m] = now
                for s in self.others:
                    comps = {c: results[(s, c)] for c in PROBED}
                    self.state.components[s] = comps
                    # Stamped when the round ends, as the view is read between rounds: a stamp of
                    # the answer's own time, written only when a round that waited out another
                    # site's silent probes ends, made a reachable site look 0.6 s late, past the
                    # 0.5 s grace (measured: the database doors flickered shut with one site off).
                    if any(comps.values()):
                        self.state.last_ok[s] = now
                    if self.metrics:
                        for c, ok in comps.items():
                            self.metrics.probe(s, c, ok)
                self.state.last_ok[self.cfg.site] = now
            await asyncio.sleep(max(0.0, interval - (self.clock() - started)))

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
        now = self.clock()
        grace = self.cfg.detector.probe_interval + self.cfg.detector.probe_timeout

        def gap(since: float) -> float:
            return round(now - since, 3) if now - since > grace else 0.0
        down = {s: gap(self.state.last_ok.get(s, now)) for s in self.others}
        silent = {m: gap(t) for m, t in self.state.postgres_heard.items()}
        bogus = {scope: c.leader_revision for scope, c in self.state.clusters.items() if c.bogus_leader()}
        return detector.View(self.cfg.site, now, down, silent, bogus)

    # -- publishing views and holding the coordinator lease -----------------------------------

    async def publish_loop(self) -> None:
        lease = 0
        last_keepalive = 0.0
        while True:
            with self.cycles.guard("publish"):
                try:
                    if not lease:
                        lease = await self.etcd.grant(self.cfg.detector.view_lease_ttl)
                    view = self.my_view()
                    await self.etcd.put(self.keys.view(self.cfg.site), json.dumps(asdict(view)), lease=lease)
                    if self.clock() - last_keepalive > 1.0:
                        if await self.etcd.keepalive(lease) <= 0:
                            lease = 0
                        last_keepalive = self.clock()
                except EtcdError as e:
                    log.warning("publishing view failed: %s", e)
                    lease = 0
            await asyncio.sleep(self.cfg.detector.probe_interval)

    async def coordinator_loop(self) -> None:
        lease = 0
        while True:
            try:
                found = await self.read_clusters()
                self.state.clusters = found
                views = await self.read_views()
                now = self.clock()
                fresh_others = [o for o, v in views.items()
                                if o != self.cfg.site and now - v.published <= self.cfg.detector.fresh]
                holder = await self.etcd.get(self.keys.coordinator)
                primary_sites, sync_sites = self.placement_of(found)
                move = coordination_move(self.cfg.site, holder.value if holder else None,
                                         primary_sites, fresh_others, sync_sites)
                if move == "campaign":
                    lease = lease or await self.etcd.grant(self.cfg.detector.coordinator_lease_ttl)
                    if await self.etcd.create(self.keys.coordinator, self.cfg.site, lease=lease):
                        log.info("became coordinator")
                elif move == "resign" and lease:
                    await self.etcd.revoke(lease)
                    log.info("resigned as coordinator: a living site whose loss would need no action "
                             "is better placed to act on the loss of this one")
                    lease = 0
                if move in ("campaign", "resign"):
                    holder = await self.etcd.get(self.keys.coordinator)
                self.state.coordinator = holder.value if holder else None
                self.state.is_coordinator = bool(holder and lease and holder.lease == lease)
                if self.state.is_coordinator and await self.etcd.keepalive(lease) <= 0:
                    lease, self.state.is_coordinator = 0, False
                await self.observe_and_act(views, found)
            except EtcdError as e:
                # Cut off from etcd's quorum: we may not be coordinator any more, so we act on nothing.
                if self.state.is_coordinator:
                    log.warning("etcd unavailable, standing down: %s", e)
                self.state.is_coordinator = False
                lease = 0
            except Exception:
                # A cycle that failed for another reason acted on nothing; a coordinator that keeps
                # failing must not keep the lease from an agent that could act (a newer version, one
                # that reads a bad value differently), so it resigns at once.
                self.cycles.failed("coordinator")
                if lease:
                    try:
                        await self.etcd.revoke(lease)
                    except EtcdError:
                        pass  # the lease then runs out by itself
                self.state.is_coordinator = False
                lease = 0
            await asyncio.sleep(self.cfg.detector.probe_interval)

    # -- observing and acting -----------------------------------------------------------------

    async def read_views(self) -> dict[str, detector.View]:
        views = {}
        for kv in await self.etcd.get_prefix(self.keys.views):
            site = kv.key[len(self.keys.views):]
            if site not in self.cfg.sites or site == self.cfg.site:
                continue  # not a site of this estate (the detector would ignore it), or our own (below)
            try:
                views[site] = detector.View.from_value(site, kv.value)
            except BadValue as e:
                self.cycles.ignore("view", failover.Ignored(kv.key, kv.mod_revision, str(e)))
        views[self.cfg.site] = self.my_view()  # our own, fresher than what we published
        return views

    async def read_clusters(self) -> dict[str, failover.ClusterState]:
        """Every cluster this agent protects, by scope: one range read per namespace."""
        if not self.cfg.patroni_namespaces:
            pk = self.pkeys
            kvs = {kv.key: kv for kv in await self.etcd.get_prefix(pk.root)}
            found = {self.cfg.default_scope: (pk, clusters_mod.cluster_state(kvs, pk, self.cfg.default_scope))}
        else:
            found = {}
            for ns in self.cfg.patroni_namespaces:
                kvs = {kv.key: kv for kv in await self.etcd.get_prefix(ns.rstrip("/") + "/")}
                found.update(clusters_mod.clusters_under(kvs, ns))
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

    def placement_of(self, found: dict[str, failover.ClusterState]) -> tuple[list[str], list[str]]:
        """The sites of every cluster's primary and synchronous standbys (one entry per cluster)."""
        primaries = [self.site_of(sc).get(c.leader, c.leader) for sc, c in found.items() if c.leader]
        syncs = [self.site_of(sc).get(n, n) for sc, c in found.items() for n in c.sync_standbys]
        return primaries, syncs

    async def observe_and_act(self, views: dict[str, detector.View],
                              found: dict[str, failover.ClusterState]) -> None:
        """One verdict for the sites, one decision per cluster: every cluster whose primary's
        site is dead fails over at once, in parallel, and a cluster whose failover is refused
        delays none of the others."""
        now = self.clock()
        cfg = detector.DetectorConfig(window=self.cfg.detector.window, fresh=self.cfg.detector.fresh)
        verdicts = detector.verdicts(self.cfg.sites, views, now, cfg)
        stalls = detector.stall_verdicts(self.cfg.sites, views, clusters_mod.commit_path(found), now, cfg)
        cut = detector.cut_links(self.cfg.sites, views, now, cfg, dead=[s for s, v in verdicts.items() if v.dead])
        bogus = detector.agreed_bogus_leaders(self.cfg.sites, views, now, cfg)
        self.state.views, self.state.verdicts, self.state.stalls, self.state.cut = views, verdicts, stalls, cut
        self._db_door_wake.set()  # a new cluster state and verdicts: the database door follows now
        if not self.state.is_coordinator:
            self._outages_adopted = False  # the next coordinator carries open outages on from the ledger
            return
        self.state.frozen = await self.etcd.get(self.keys.frozen) is not None
        await self.track_incidents(verdicts, now)
        decisions = {scope: failover.decide(c, verdicts, self.site_of(scope), frozen=self.state.frozen,
                                            stalled={m.split("/", 1)[1]: v for m, v in stalls.items()
                                                     if m.startswith(scope + "/")}, cut=cut,
                                            bogus_agreed=bogus.get(scope) == c.leader_revision)
                     for scope, c in found.items()}
        # Every 2 s at most, but every tick while a primary's site has a cut link: if etcd's leader
        # is at its other end, the primary's Patroni is counting down to demoting itself.
        primary_sites, _ = self.placement_of(found)
        leader_cut = any(p in link for link in cut for p in primary_sites)
        if not any(d.failover for d in decisions.values()) and not self.state.frozen and \
                (now - self._placed_at > 2.0 or leader_cut):
            self._placed_at = now
            await self.place_etcd_leader(found, verdicts, cut)
        for scope, d in decisions.items():
            if d.reason != self.state.decisions.get(scope):
                log.info("decision for %s: %s", scope, d.reason)
                self.state.decisions[scope] = d.reason
        self.state.last_decision = "; ".join(
            (f"{scope}: " if len(decisions) > 1 else "") + d.reason for scope, d in decisions.items())
        acting = [(scope, d) for scope, d in decisions.items() if d.failover]
        if acting:
            await asyncio.gather(*(self.execute(d, found[scope], scope) for scope, d in acting))
        if self.cfg.services:
            await self.track_service_outages(found, decisions, verdicts, now)

    async def track_service_outages(self, found: dict[str, failover.ClusterState],
                                    decisions: dict[str, failover.Decision], verdicts: dict[str, detector.Verdict],
                                    now: float) -> None:
        """Each service's own outage into the ledger (control/outages.py), as coordinator."""
        if not self._outages_adopted:
            self.state.outages = outages.adopt(kv.value for kv in await self.etcd.get_prefix(self.keys.ledger))
            self._outages_adopted = True
        dead = {s for s, v in verdicts.items() if v.dead}
        out = {scope: why for scope, c in found.items()
               if (why := outages.cluster_out(c, dead, self.site_of(scope), decisions[scope].refused))}
        # Instances not probed yet (the agent just started) are not taken for lost.
        no_instance = {name: "no instance runs in a living site" for name, svc in self.cfg.services.items()
                       if name in self.state.instances
                       and not any(s not in dead and self.state.instances[name].get(s) for s in svc.sites)}
        now_out = outages.causes(out, no_instance, {n: s.databases for n, s in self.cfg.services.items()},
                                 {n: s.calls for n, s in self.cfg.services.items()})
        # A cluster that lost its primary's (or standby's) site was out from the incident's start.
        started = {}
        for scope, c in found.items():
            sites = {self.site_of(scope).get(n, n) for n in (c.leader, *c.sync_standbys) if n}
            starts = [self.state.open_incidents[s].start for s in sites if s in self.state.open_incidents]
            if starts:
                started[scope] = min(starts)
        self.state.outages, writes = outages.step(self.state.outages, now_out, now, started)
        for w in writes:
            await self.etcd.put(self.keys.ledger_service_entry(w.start, w.service), json.dumps(w.entry(self.cfg.site)))
            log.info("ledger: %s %s (%s)", w.service, "out since %.3f" % w.start if w.end is None
                     else "back after %.2f s" % (w.end - w.start), w.cause)

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
                        await self._wake_primary(cluster)
                case failover.DeleteLeader():
                    await self._release_leader(action, pk, scope or self.cfg.default_scope)

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

    async def _release_leader(self, action: failover.DeleteLeader, pk: PatroniKeys, scope: str) -> None:
        ok = await self.etcd.cas_delete(pk.leader, action.revision)
        if ok:
            self.state.failovers += 1
            if self.metrics:
                self.metrics.failover()
            site = self.site_of(scope).get(action.member, action.member)
            inc = self.state.open_incidents.get(site)
            if inc is not None:
                done = f"released leader key of {scope}/{action.member} at {self.clock():.3f}"
                inc.failover = "; ".join(x for x in (inc.failover, done) if x)
                await self.save_incident(inc)
        log.warning("released leader key of %s (%s): %s", scope, action.member,
                    "done" if ok else "it changed meanwhile (Patroni acted first)")

    async def place_etcd_leader(self, found: dict[str, failover.ClusterState],
                                verdicts: dict[str, detector.Verdict], cut: set[frozenset[str]]) -> None:
        if self.etcd_admin is None and self.cfg.etcd_access:
            return  # a locked etcd and no admin identity: leadership stays where raft puts it
        try:
            leader_id, members = await self.etcd.leader_and_members()
        except EtcdError:
            return
        by_id = {m["ID"]: m for m in members}
        leader_site = by_id.get(leader_id, {}).get("name")
        primary_sites, sync_sites = self.placement_of(found)
        living = [s for s, v in verdicts.items() if not v.dead]
        target = etcd_leader_target(leader_site, primary_sites, sync_sites, living, cut)
        if target is None:
            return
        target_member = next((m for m in members if m.get("name") == target), None)
        if target_member is None:
            return
        try:
            await (self.etcd_admin or self.etcd).move_leader(by_id[leader_id], target_member["ID"])
            log.info("moved etcd leadership from %s to %s (%s)", leader_site, target,
                     "a primary's site could not hear it" if any(leader_site in link for link in cut) else
                     "away from the primaries' sites")
        except EtcdError as e:
            log.warning("could not move etcd leadership to %s: %s", target, e)

    async def track_incidents(self, verdicts: dict[str, detector.Verdict], now: float) -> None:
        for site, v in verdicts.items():
            inc = self.state.open_incidents.get(site)
            if v.dead and inc is None:
                inc = Incident(site=site, start=now - self.cfg.detector.window, detail=v.reason)
                self.state.open_incidents[site] = inc
                await self.save_incident(inc)
            elif not v.dead and inc is not None and not v.votes:
                inc.end = now
                await self.save_incident(inc)
                del self.state.open_incidents[site]

    async def save_incident(self, inc: Incident) -> None:
        # The ledger lives in etcd: replicated to every site, it survives the loss of any one.
        key = self.keys.ledger_entry(inc.start, inc.site)
        entry = {**asdict(inc), "recorded_by": self.cfg.site, "source": "agent"}
        if self.cfg.services:
            # An estate records each service's own outage (track_service_outages): the site's loss is
            # on record, but is not an outage of every service (compensation is per service).
            entry["service"] = f"site {inc.site}"
        await self.etcd.put(key, json.dumps(entry))

    async def release_loop(self) -> None:
        """Keep this site's app on the current release: a site that was dead during a deploy
        catches up when it comes back, from the release store every site has a copy of."""
        from firebreak.control.ops import push_release

        while True:
            await asyncio.sleep(2.0)
            if not self.cfg.app_admin_token:
                continue
            with self.cycles.guard("release"):
                try:
                    current = await self.etcd.get(self.keys.release_current)
                    if current is None:
                        continue
                    release = ops.release_of(current.value)
                    app = self.cfg.sites[self.cfg.site].app
                    running = (await self.http.get(app + "/version", timeout=1.0)).json().get("version")
                    if running != release["version"]:
                        await push_release(self.http, app, self.cfg.app_admin_token, release)
                        log.info("brought this site's app to release %s (was %s)", release["version"], running)
                except BadValue as e:
                    self.cycles.ignore("release", failover.Ignored(current.key, current.mod_revision, str(e)))
                except (EtcdError, httpx.HTTPError, ValueError, AttributeError):
                    continue  # etcd or the app unreachable, or the app answered oddly: next time

    async def door_loop(self) -> None:
        """Keep this site's front door sending to the undrained sites, its own first.

        Sites found dead are left to the door's own health checks rather than removed here:
        every configuration change is a reload, and a reload closes the door's idle keep-alive
        connections, so a client sending on one at that moment loses its request. Measured: one
        failed read in a surviving site in 20 failovers when the agent reloaded the door at
        detection; the health checks skip a silent upstream within a second anyway. Drains are
        operators' planned actions, and worth a reload."""
        door = self.cfg.door
        if door is None:
            return
        keeper = DoorKeeper(door.admin, self.http)
        self.door = keeper
        # An estate's door serves its services; the reference app only where there are no services.
        services = {n: dict(svc.sites) for n, svc in self.cfg.services.items()} or None
        apps = {} if services else {s: e.app for s, e in self.cfg.sites.items()}
        drained: set[str] | None = None
        read_at = 0.0
        while True:
            with self.cycles.guard("door"):
                if self.clock() - read_at >= 1.0:
                    read_at = self.clock()
                    try:
                        # Only sites of this estate: a key for another name drains nothing.
                        drained = {kv.key.rsplit("/", 1)[1]
                                   for kv in await self.etcd.get_prefix(self.keys.drained)} & set(self.cfg.sites)
                        if drained != self.state.drained:
                            self.state.drained = frozenset(drained)
                            self._db_door_wake.set()  # the database door's reads leave an evacuated site too
                    except EtcdError:
                        drained = None  # cut off: keep what the door has, it skips dead upstreams by itself
                if drained is not None:
                    order = ops.routing(list(self.cfg.sites), self.cfg.site, set(), drained)["for_this_site"]
                    await keeper.push(door_config(self.cfg.site, order, apps, door.listen, admin_listen(door.admin),
                                                  door.tls, services), order, self.clock())
            await asyncio.sleep(self.cfg.detector.probe_interval)

    def db_door_routes(self) -> dict[str, dbdoor.Routes]:
        """scope -> where this site's database door sends that cluster's clients."""
        view = self.my_view()
        unreachable = {s for s, gap in view.unreachable_for.items() if gap > 0}
        dead = {s for s, v in self.state.verdicts.items() if v.dead}
        return {scope: dbdoor.routes(c, self.site_of(scope), dead, unreachable,
                                     sites_seen=len(self.cfg.sites) - len(unreachable), sites_total=len(self.cfg.sites),
                                     drained=self.state.drained)
                for scope, c in self.state.clusters.items()}

    async def db_door_loop(self) -> None:
        """Keep this site's database door on each cluster's current primary and living standbys:
        at once when a cluster or a verdict changes, and every probe interval from this agent's
        own reachability (a site it cannot reach gets no clients, and their sessions are shut).
        This site's app, which connects to the servers itself, is told when its writes leave the
        server they went to, at the moment the door shuts its own sessions there."""
        dd = self.cfg.db_door
        ports = dd.ports(self.cfg.default_scope) if dd is not None else {}
        keeper = None
        if dd is not None:
            keeper = dbdoor.DbDoorKeeper(dd.socket_path, [self.cfg.member_of(s) for s in self.cfg.sites])
            self.db_door = keeper
        while True:
            try:
                await asyncio.wait_for(self._db_door_wake.wait(), self.cfg.detector.probe_interval)
            except asyncio.TimeoutError:
                pass
            self._db_door_wake.clear()
            with self.cycles.guard("db-door"):
                routes = self.db_door_routes()
                if self.cfg.default_scope in routes:
                    self.follow_app_writes(routes[self.cfg.default_scope])
                new = {scope: r for scope, r in routes.items() if scope in ports}
                if keeper is not None and new:
                    await keeper.apply(new, self.clock())

    def follow_app_writes(self, now: dbdoor.Routes) -> None:
        before, self._app_writes_to = self._app_writes_to, now.rw
        if self.cfg.app_admin_token and dbdoor.writes_left(before, now):
            task = asyncio.create_task(self._tell_app_primary_moved(before, now))
            self._background.add(task)  # held until done: the loop keeps no other reference
            task.add_done_callback(self._background.discard)

    async def _tell_app_primary_moved(self, before: str, now: dbdoor.Routes) -> None:
        app = self.cfg.sites[self.cfg.site].app
        try:
            await ops.push_primary_moved(self.http, app, self.cfg.app_admin_token)
            log.info("told this site's app to hang up on %s (%s)", before, now.why)
        except httpx.HTTPError as e:
            # Its pool still finds out, one write deadline later; nothing else depends on this.
            log.warning("could not tell this site's app that writes left %s: %s", before, e)

    async def instances_loop(self, every: float = 1.0) -> None:
        """Which of the estate's service instances answer a TCP connect, every second: what
        `check --live` reads as the running estate (not on the detector's path)."""
        if not self.cfg.services:
            return
        targets = {(name, site): _host_port(url) for name, svc in self.cfg.services.items()
                   for site, url in svc.sites.items()}

        async def one(host: str, port: int) -> bool:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            except (OSError, asyncio.TimeoutError):
                return False
            writer.close()
            return True
        while True:
            with self.cycles.guard("instances"):
                results = await asyncio.gather(*(one(*hp) for hp in targets.values()))
                found: dict[str, dict[str, bool]] = {}
                for (name, site), ok in zip(targets, results):
                    found.setdefault(name, {})[site] = ok
                self.state.instances = found
            await asyncio.sleep(every)

    def estate(self) -> dict:
        """The running estate as this agent sees it now: which site runs which etcd member,
        cluster members, service instances and agents. `check --live` analyses it."""
        dead = {s for s, v in self.state.verdicts.items() if v.dead}

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

    async def maintenance_loop(self, every: float = 10.0) -> None:
        """Watch etcd's storage (alarms, database sizes) and, as coordinator, keep it bounded:
        defragment one member at a time and prune what Firebreak keeps beyond its retention."""
        last_defrag, last_prune = 0.0, 0.0
        while True:
            await asyncio.sleep(every)
            with self.cycles.guard("maintenance"):
                try:
                    members = await self._storage()
                    _, listed = await self.etcd.leader_and_members()
                    names = {m["ID"]: m.get("name", m["ID"]) for m in listed}
                    alarms = [(names.get(mid, mid), kind) for mid, kind in await self.etcd.alarms()]
                except EtcdError as e:
                    self.state.etcd_health = {"error": str(e)}
                    continue
                health = maintenance.storage_health(members, alarms, self.cfg.etcd_quota_bytes)
                self.state.etcd_health = {
                    "alarms": list(health.alarms), "warnings": list(health.warnings),
                    "quota_bytes": self.cfg.etcd_quota_bytes, "fullest": health.worst_fraction,
                    "members": {m.name: {"db_size": m.db_size, "db_size_in_use": m.db_size_in_use,
                                         "revision": m.revision} for m in members}}
                if self.metrics:
                    for m in members:
                        self.metrics.etcd_db_bytes.labels(self.cfg.site, m.name, "total").set(m.db_size)
                        self.metrics.etcd_db_bytes.labels(self.cfg.site, m.name, "in_use").set(m.db_size_in_use)
                    for kind in ("NOSPACE", "CORRUPT"):
                        self.metrics.etcd_alarm.labels(self.cfg.site, kind).set(
                            1 if any(k == kind for _, k in alarms) else 0)
                for w in health.warnings:
                    log.warning("%s", w)
                if not self.state.is_coordinator:
                    continue
                now = self.clock()
                suspects = {s for s, v in self.state.verdicts.items() if v.dead or v.votes}
                target = maintenance.defrag_target(members, suspects, last_defrag, now)
                admin = self.etcd_admin or (None if self.cfg.etcd_access else self.etcd)
                if target is not None and admin is not None:
                    last_defrag = now
                    try:
                        await admin.defragment(self.cfg.sites[target].etcd)
                        log.info("defragmented etcd member %s", target)
                    except EtcdError as e:
                        log.warning("could not defragment etcd member %s: %s", target, e)
                if now - last_prune >= 60.0:
                    last_prune = now
                    try:
                        await self.prune()
                    except EtcdError as e:
                        log.warning("pruning Firebreak's keys failed (will retry): %s", e)

    async def _storage(self) -> list[maintenance.MemberStorage]:
        """Each living site's etcd member, asked directly (sizes are per member)."""
        dead = {s for s, v in self.state.verdicts.items() if v.dead}
        sites = [s for s in self.cfg.sites if s not in dead]

        async def one(site: str) -> maintenance.MemberStorage | None:
            try:
                st = await self.etcd.member_status(self.cfg.sites[site].etcd)
            except EtcdError:
                return None
            return maintenance.MemberStorage(site, int(st.get("dbSize", 0)), int(st.get("dbSizeInUse", 0)),
                                             int(st.get("header", {}).get("revision", 0)))
        found = await asyncio.gather(*(one(s) for s in sites))
        return [m for m in found if m is not None]

    async def prune(self) -> None:
        """Retention for the ledger, the one kept store an agent may write (keys.py lists each
        rule). The audit log and the release store are operators' keys: the consoles prune them
        as the ops user when they add to them (control/actions.py)."""
        from firebreak.control import keys as k

        ledger = [kv.key for kv in await self.etcd.get_prefix(self.keys.ledger, keys_only=True)]
        for key in maintenance.ledger_expired(ledger, self.keys.ledger, self.clock() - k.LEDGER_KEEP_DAYS * 86400):
            await self.etcd.delete(key)

    async def close(self) -> None:
        await self.etcd.close()
        if self.etcd_admin is not None:
            await self.etcd_admin.close()
        await self.http.aclose()



def _host_port(url: str) -> tuple[str, int]:
    host, port = dial_of(url).rsplit(":", 1)
    return host, int(port)
