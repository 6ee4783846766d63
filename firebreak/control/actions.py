"""The operators' actions, one function each, behind every site's console and `firebreak ops`.

Each takes the console's context, the validated request body and the authenticated operator, and
returns what it did, or raises Denied with the HTTP status and a reason a person can act on.
Deciding whether an action is safe is ops.switchover_plan / ops.evacuation_plan (pure); these
functions are the I/O around them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field

from firebreak.control import ops
from firebreak.control.agent import Agent
from firebreak.control.auth import Operator
from firebreak.control.etcd import Etcd, EtcdError
from firebreak.errors import BadValue, Denied
from firebreak.inputs import NAME_PATTERN as NAME

log = logging.getLogger("firebreak.actions")


class ActionIn(BaseModel):
    """Every field is capped: a request body cannot grow anything."""

    model_config = ConfigDict(extra="forbid")
    site: str | None = Field(default=None, max_length=31, pattern=NAME, description="evacuate / restore: the site")
    to: str | None = Field(default=None, max_length=64, pattern=r"^[a-z][a-z0-9_.-]{0,63}$",
                           description="switchover: the site (or member) to move the primary to")
    cluster: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                description="switchover: the cluster (Patroni scope); the first if omitted")
    version: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                                description="deploy / release: the version")
    notes: str = Field(default="", max_length=2000)
    make_sync: bool = Field(default=False, description="switchover: if the target is a healthy asynchronous "
                                                       "standby, have Patroni make it synchronous first")


# Why a console without an operators' etcd identity refuses actions (every action writes at least
# its audit entry, which only the ops role may write).
NO_OPS_IDENTITY = ("this console has no operators' etcd identity: set etcd_ops_access in the agent's config to "
                   "the ops role's access file (control/keys.py role_grants); the agent's own etcd user may not "
                   "write frozen, drained, releases, operators or the audit log")


@dataclass
class Context:
    agent: Agent
    etcd: Etcd            # the console's patient client, as the agent's etcd user: reads only
    http: httpx.AsyncClient
    # The console's patient client as the operators' etcd user (the ops role), for the writes it
    # makes on an authenticated operator's behalf; None when this agent has none configured.
    ops: Etcd | None = None
    ops_missing: str = NO_OPS_IDENTITY

    def writer(self) -> Etcd:
        """The client for operators' writes, or a refusal naming the setting that is missing."""
        if self.ops is None:
            raise Denied(503, self.ops_missing)
        return self.ops

    @property
    def cfg(self):
        return self.agent.cfg

    @property
    def keys(self):
        return self.agent.cfg.keys

    def dead_sites(self) -> set[str]:
        return {s for s, v in self.agent.state.verdicts.items() if v.dead}

    def patroni_urls(self, cluster=None, scope: str | None = None) -> list[str]:
        """Patroni REST APIs to ask, this site's first, dead sites left out: a cluster's members'
        own addresses (every cluster has its own ports), or the configured ones."""
        cfg, dead = self.cfg, self.dead_sites()
        if cluster is not None and cluster.members:
            site_of = self.agent.site_of(scope or cfg.default_scope)
            urls = [(site_of.get(n) != cfg.site, m.api_url.removesuffix("/patroni")) for n, m in cluster.members.items()
                    if m.api_url and site_of.get(n) not in dead]
            found = [u for _, u in sorted(urls)]
            if found:
                return found
        return [cfg.sites[cfg.site].patroni] + [ep.patroni for s, ep in cfg.sites.items()
                                                if s != cfg.site and s not in dead]

    def patroni_auth(self) -> tuple[str, str] | None:
        return (self.cfg.patroni_user, self.cfg.patroni_password) if self.cfg.patroni_user else None


def _stamp(who: Operator) -> str:
    return json.dumps({"by": who.name, "at": time.time()})


def _known_site(ctx: Context, site: str | None) -> str:
    if site not in ctx.cfg.sites:
        raise Denied(422, f"site: unknown site {site!r}; sites are {', '.join(ctx.cfg.sites)}")
    return site


async def freeze(ctx: Context, body: ActionIn, who: Operator) -> dict:
    await ctx.writer().put(ctx.keys.frozen, _stamp(who))
    return {"frozen": True}


async def unfreeze(ctx: Context, body: ActionIn, who: Operator) -> dict:
    await ctx.writer().delete(ctx.keys.frozen)
    return {"frozen": False}


async def restore(ctx: Context, body: ActionIn, who: Operator) -> dict:
    site = _known_site(ctx, body.site)
    await ctx.writer().delete(ctx.keys.drained_site(site))
    return {"restored": site}


async def evacuate(ctx: Context, body: ActionIn, who: Operator) -> dict:
    """Drain a site and move every primary it holds (all clusters) elsewhere, in parallel."""
    site = _known_site(ctx, body.site)
    writer = ctx.writer()
    found = await ctx.agent.read_clusters()
    plans = {scope: ops.evacuation_plan(c, site, ctx.agent.site_of(scope), ctx.agent.state.verdicts)
             for scope, c in found.items()}
    refused = [f"{scope}: {p.reason}" for scope, p in plans.items() if not p.ok]
    if refused:
        raise Denied(409, "; ".join(refused))
    await writer.put(ctx.keys.drained_site(site), _stamp(who))
    single = len(found) == 1
    result: dict = {"drained": site, "plan": "; ".join((f"{sc}: " if not single else "") + p.reason
                                                       for sc, p in plans.items())}
    moving = [(scope, p) for scope, p in plans.items() if p.candidate]

    async def move(scope: str, candidate: str) -> str:
        c = found[scope]  # the state the plans were made from
        return await ops.patroni_switchover(ctx.http, ctx.patroni_urls(c, scope), ctx.patroni_auth(), c.leader,
                                            candidate)
    if single:
        if moving:
            result["switchover"] = await move(*[(sc, p.candidate) for sc, p in moving][0])
        return result
    # Every cluster at once; one that refuses does not stop the others, and the answer says which moved.
    done = await asyncio.gather(*(move(scope, p.candidate) for scope, p in moving), return_exceptions=True)
    result["switchovers"] = {scope: (f"failed: {r}" if isinstance(r, BaseException) else r)
                             for (scope, _), r in zip(moving, done)}
    failed = [scope for (scope, _), r in zip(moving, done) if isinstance(r, BaseException)]
    if failed:
        raise Denied(409, f"{site} drained, but the primary of {', '.join(failed)} did not move: "
                          + "; ".join(f"{k}: {v}" for k, v in result["switchovers"].items()))
    return result


async def switchover(ctx: Context, body: ActionIn, who: Operator) -> dict:
    if not body.to:
        raise Denied(422, "to: required (the site to move the primary to)")
    cluster = await ctx.agent.read_cluster(body.cluster)
    scope = body.cluster or cluster.name or ctx.cfg.default_scope
    site_of, verdicts = ctx.agent.site_of(scope), ctx.agent.state.verdicts
    member = ops.sync_first(cluster, body.to, site_of, verdicts) if body.make_sync else None
    if member is None:
        return await _switch(ctx, cluster, scope, body)
    # One more synchronous standby for the time of the move: commits then wait for the target
    # too, so it holds every acknowledged write when it takes over. Put back whatever happens.
    url, auth = ctx.patroni_urls(cluster, scope)[0], ctx.patroni_auth()
    count = len(cluster.sync_standbys) + 1
    try:
        before = await ops.patroni_sync_count(ctx.http, url, auth, count)
    except httpx.HTTPError as e:
        raise Denied(409, f"{scope}: could not make {body.to} a synchronous standby: {e!r}")
    try:
        deadline = time.monotonic() + 30
        while member not in cluster.sync_standbys:
            if time.monotonic() > deadline:
                raise Denied(409, f"{scope}: {body.to} did not become a synchronous standby within 30 s; "
                                  "is it streaming and caught up?")
            await asyncio.sleep(0.5)
            cluster = await ctx.agent.read_cluster(scope)
        return {**await _switch(ctx, cluster, scope, body), "made_synchronous": member}
    finally:
        try:
            await ops.patroni_sync_count(ctx.http, url, auth, before)
        except httpx.HTTPError as e:  # the move stands; the count needs a hand
            log.error("%s: could not set synchronous_node_count back to %s: %r; set it with patronictl "
                      "edit-config", scope, before, e)


async def _switch(ctx: Context, cluster, scope: str, body: ActionIn) -> dict:
    plan = ops.switchover_plan(cluster, body.to, ctx.agent.site_of(scope), ctx.agent.state.verdicts)
    if not plan.ok:
        raise Denied(409, (f"{scope}: " if body.cluster else "") + plan.reason)
    return {"switchover": await ops.patroni_switchover(ctx.http, ctx.patroni_urls(cluster, scope),
                                                       ctx.patroni_auth(), cluster.leader, plan.candidate),
            "cluster": scope}


# Held until done (the event loop keeps only weak references), by what they do: one of each kind
# at a time, so a stream of actions during an etcd election does not stack up full reads.
_housekeeping: dict[str, asyncio.Task] = {}


def after_reply(work: Callable[[], Awaitable], what: str) -> None:
    """Housekeeping an action's answer need not wait for (pruning): while etcd elects a leader
    every call may wait out the client's timeout at a member, and a release that also pruned in
    line took more than 3 s to answer (chaos seed 3). While one of the same kind runs, another
    is not started (the running one, or the next action's, does the work). A failure is logged;
    the next action tries again."""
    running = _housekeeping.get(what)
    if running is not None and not running.done():
        return

    async def run() -> None:
        try:
            await work()
        except Exception as e:   # a closed client at shutdown too: logged, never left unretrieved
            log.warning("%s failed: %r", what, e)
    task = asyncio.create_task(run())
    _housekeeping[what] = task
    task.add_done_callback(lambda t: _housekeeping.pop(what, None) if _housekeeping.get(what) is t else None)


async def release(ctx: Context, body: ActionIn, who: Operator) -> dict:
    if not body.version:
        raise Denied(422, "version: required")
    writer = ctx.writer()
    await writer.put(ctx.keys.release(body.version), ops.release_record(body.version, body.notes))
    after_reply(lambda: prune_releases(writer, ctx.keys), "pruning old releases")   # the release is stored
    return {"stored": body.version}


async def prune_releases(etcd: Etcd, keys) -> None:
    """Keep the newest RELEASES_KEEP releases, never the current one. Operators add releases, so
    the operators' identity prunes them when it adds one: the agents' etcd users may not write
    releases/ (their coordinator's pruning only ever finds them already within bounds)."""
    from firebreak.control import maintenance
    from firebreak.control.keys import RELEASES_KEEP

    releases = await etcd.get_prefix(keys.releases, keys_only=True)
    current = await etcd.get(keys.release_current)
    try:
        current_version = ops.release_of(current.value)["version"] if current else None
    except BadValue:
        current_version = None
    stored = {kv.key[len(keys.releases):]: kv.mod_revision for kv in releases}
    # Each drop only while the current release is the one read and the release itself is as read:
    # an operator rolling back to an old release, or storing it again, meanwhile must not find it
    # pruned under them. The next prune sees what they did.
    guard = current.mod_revision if current else 0
    for version in maintenance.releases_to_drop(stored, RELEASES_KEEP, current_version):
        if not await etcd.delete_if_unchanged(keys.release(version), stored[version], keys.release_current, guard):
            return


async def roll(http: httpx.AsyncClient, app_url: str, token: str, record: dict, dead: bool) -> str:
    """Push a release to one site's app: "ok", "skipped: ..." when the app could not be reached,
    "failed: ..." when it answered with an error or spoke no HTTP. A skipped site gets the
    release from the store through its own agent (release_loop.py) once it can.

    A connection that broke (reset, closed before any answer) is tried once more, on a new
    connection: a site back from a power cut answers probes (so it is no longer dead) before its
    app listens again, and the connection the console had kept open to the app that died there
    is reset at its first use. The power-cut drill failed on that deploy (2026-12-06,
    `ReadError('')` 3.4 s into the cut). Pushing a release twice is harmless."""
    if dead:
        return "skipped: site is dead"
    broken: httpx.HTTPError | None = None
    for _ in range(2):
        try:
            await ops.push_release(http, app_url, token, record)
            return "ok"
        except (httpx.ConnectError, httpx.TimeoutException) as e:
            # Not answering is what a site that just died looks like before the verdict.
            return f"skipped: unreachable ({type(e).__name__})"
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as e:
            broken = e   # once more, on a new connection
        except httpx.HTTPStatusError as e:
            return f"failed: HTTP {e.response.status_code}"
        except httpx.HTTPError as e:
            return f"failed: {type(e).__name__}: {e}"
    if isinstance(broken, httpx.RemoteProtocolError):
        return f"failed: {broken}"   # twice, on two connections: what answers there speaks no HTTP
    return f"skipped: unreachable ({type(broken).__name__})"


async def deploy(ctx: Context, body: ActionIn, who: Operator) -> dict:
    if not body.version:
        raise Denied(422, "version: required")
    writer = ctx.writer()  # before rolling anything out: the result must be recordable
    kv = await ctx.etcd.get(ctx.keys.release(body.version))
    if kv is None:
        raise Denied(404, f"version: no release {body.version!r} in the release store; add it first")
    record = kv.json()
    dead = ctx.dead_sites()
    # Every site at once: a silent site costs its timeout once, not once per site after it.
    results = await asyncio.gather(*(roll(ctx.http, ep.admin_url, ctx.cfg.app_admin_token, record, s in dead)
                                     for s, ep in ctx.cfg.sites.items()))
    rolled = dict(zip(ctx.cfg.sites, results))
    await writer.put(ctx.keys.release_current, json.dumps({**record, "rolled": rolled, "by": who.name,
                                                             "at": time.time()}))
    if any(v.startswith("failed") for v in rolled.values()):
        raise Denied(502, "deploy failed in " + "; ".join(f"{s} ({v.removeprefix('failed: ')})"
                                                          for s, v in rolled.items() if v.startswith("failed")))
    return {"deployed": body.version, "sites": rolled}


Action = Callable[[Context, ActionIn, Operator], Awaitable[dict]]

# Each action and the role it needs.
ACTIONS: dict[str, tuple[Action, str]] = {
    "freeze": (freeze, "operator"), "unfreeze": (unfreeze, "operator"), "switchover": (switchover, "operator"),
    "evacuate": (evacuate, "operator"), "restore": (restore, "operator"), "deploy": (deploy, "operator"),
    "release": (release, "operator"),
}
