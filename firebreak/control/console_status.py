"""The console's reads: health, the status of every site and cluster, the running estate,
routing, the outage ledger and the audit log (newest first, a page at a time), and metrics."""

from __future__ import annotations

import asyncio

from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest

from firebreak.control import ops
from firebreak.control.agent import Agent
from firebreak.control.console_deps import Console, ConsoleDep
from firebreak.control.etcd import EtcdError
from firebreak.errors import BadValue

AUDIT_PAGE = 100
MAX_PAGE = 1000


def _running_version() -> str:
    """The installed firebreak's version: what a person compares across sites during a rollout."""
    try:
        return version("firebreak")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


VERSION = _running_version()

router = APIRouter()


@router.get("/healthz")
async def healthz(c: ConsoleDep) -> dict:
    return {"status": "alive", "site": c.site}


@router.get("/api/status")
async def status(c: ConsoleDep) -> dict:
    return await status_doc(c)


@router.get("/api/estate")
async def estate(c: ConsoleDep) -> dict:
    """The running estate as this site's agent sees it now (read by `firebreak check --live`)."""
    return c.agent.estate()


@router.get("/api/routing")
async def routing(c: ConsoleDep) -> dict:
    return (await status_doc(c))["routing"]


@router.get("/api/ledger")
async def ledger(c: ConsoleDep, limit: int = Query(AUDIT_PAGE, ge=1, le=MAX_PAGE),
                 before: str | None = Query(None, max_length=80)) -> list:
    """Newest first, a page at a time: `before` is the `key` of the last entry of the previous page."""
    return await page_of(c, c.keys.ledger, limit, before)


@router.get("/api/audit")
async def audit_log(c: ConsoleDep, limit: int = Query(AUDIT_PAGE, ge=1, le=MAX_PAGE),
                    before: str | None = Query(None, max_length=80)) -> list:
    """Newest first, a page at a time: `before` is the `key` of the last entry of the previous page."""
    return await page_of(c, c.keys.audit, limit, before)


@router.get("/metrics")
async def metrics(c: ConsoleDep) -> PlainTextResponse:
    m = c.agent.metrics
    if m is None:
        return PlainTextResponse("")
    for s, v in c.agent.state.verdicts.items():
        m.dead.labels(c.site, s).set(1 if v.dead else 0)
    m.coordinator.labels(c.site).set(1 if c.agent.state.is_coordinator else 0)
    m.observe(coordinating=c.agent.state.is_coordinator, frozen=c.agent.state.frozen,
              door_writes_to=_door_writes_to(c.agent),
              refused={scope: scope in c.agent.state.memory.refused for scope in c.agent.state.clusters})
    return PlainTextResponse(generate_latest(m.registry).decode())


def _door_writes_to(agent: Agent) -> dict[str, str | None]:
    """Each cluster on this site's database door -> where its writes go, as last applied (None
    before the agent steered it, or while the door refuses writes or cannot be reached)."""
    dd, keeper = agent.cfg.db_door, agent.db_door
    if dd is None:
        return {}
    applied = (keeper.applied if keeper else None) or {}
    return {scope: (applied[scope].rw if scope in applied else None) for scope in dd.ports(agent.cfg.default_scope)}


async def page_of(c: Console, prefix: str, limit: int, before: str | None) -> list:
    """The newest `limit` entries older than the `before` entry. The audit log's keys sort newest
    first (keys.newest_first); the ledger's, short, sort by time and are read descending."""
    if prefix == c.keys.audit:
        kvs = await c.etcd.get_prefix(prefix, limit=limit, after=prefix + before if before else None)
    else:
        kvs = await c.etcd.get_prefix(prefix, limit=limit, descending=True, end=prefix + before if before else None)
    out = []
    for kv in kvs:
        try:
            out.append({**kv.json(), "key": kv.key[len(prefix):]})
        except (ValueError, TypeError):
            continue
    return out


async def status_doc(c: Console) -> dict:
    # Status reads use the agent's fail-fast client: a console cut off from etcd says so at
    # once, and a client that knows every console asks the next one.
    agent, cfg = c.agent, c.cfg
    st = agent.state
    try:
        found, drained, current, frozen_kv = await c.status_reads.get(lambda: _etcd_reads(c))
        every = {scope: _one_cluster(agent, scope, cl) for scope, cl in found.items()}
        cluster = every.get(cfg.default_scope) or next(iter(every.values()), {"leader": None})
        drain = {kv.key.rsplit("/", 1)[1] for kv in drained}
        frozen = frozen_kv is not None
    except EtcdError as e:
        cluster, drain, current, frozen = {"error": str(e)}, set(), None, st.frozen
        every = {}
    dead = {s for s, v in st.verdicts.items() if v.dead}
    mine = agent.my_view()   # what this agent publishes: silence only from completed rounds
    return {
        "site": cfg.site, "version": VERSION, "coordinator": st.coordinator, "is_coordinator": st.is_coordinator,
        "frozen": frozen, "primary": cluster.get("primary_site"), "cluster": cluster,
        # Every cluster this agent protects, what each site holds of them, and the services.
        "clusters": every, "site_roles": _site_roles(every),
        "services": agent.estate()["services"] if cfg.services else {},
        "sites": {s: {"dead": v.dead, "reason": v.reason, "votes": list(v.votes), "drained": s in drain,
                      "components": st.components.get(s, {}),
                      "unreachable_for": mine.unreachable_for.get(s, 0.0)}
                  for s, v in st.verdicts.items()},
        "routing": ops.routing(list(cfg.sites), cfg.site, dead, drain, {s: e.door for s, e in cfg.sites.items()}),
        # The door's upstreams, best first; a dead one among them is skipped by its health checks.
        "door": {"url": cfg.sites[cfg.site].door, "upstreams": agent.door.order if agent.door else None},
        # The database door: where it sends writes and reads now, as last applied.
        "db_door": _db_door_status(agent),
        "release": _release_of(current),
        "last_decision": st.last_decision, "failovers": st.failovers,
        # Gray failures as this agent last saw them: links between living sites seen cut,
        # primaries' PostgreSQL answering nothing, and loop cycles that failed (control/cycles.py).
        "cut_links": sorted(sorted(link) for link in st.cut),
        "stalls": {m: {"stalled": v.dead, "reason": v.reason} for m, v in st.stalls.items()},
        "cycle_errors": dict(agent.cycles.errors),
        "incidents": [asdict(i) for i in st.open_incidents.values()],
        # etcd's storage: alarms (NOSPACE, CORRUPT), sizes per member against the quota, and a
        # warning a person can act on (also on the console page and in /metrics).
        "etcd": st.etcd_health,
    }


async def _etcd_reads(c: Console) -> tuple:
    """The status's four etcd reads, at once, shared by every request within STATUS_FRESH_S
    (console_deps): the status is anonymous, and these go through the agent's own client.
    While etcd elects a leader (a flapping site took the last one with it) each read may wait
    out the client's timeout at every member in turn, and four in a row left the status
    unanswered for more than 3 s (chaos seed 3: 5 of its 11 failed ops actions were status
    reads at a site not under the fault)."""
    agent, keys = c.agent, c.keys
    return tuple(await asyncio.gather(agent.read_clusters(), agent.etcd.get_prefix(keys.drained),
                                      agent.etcd.get(keys.release_current), agent.etcd.get(keys.frozen)))


def _one_cluster(agent: Agent, scope: str, c) -> dict:
    site_of = agent.site_of(scope)
    return {"leader": c.leader, "primary_site": site_of.get(c.leader) if c.leader else None,
            "sync_standbys": list(c.sync_standbys),
            "members": {n: {"role": m.role, "state": m.state, "site": site_of.get(n)} for n, m in c.members.items()},
            "decision": agent.state.decisions.get(scope, "")}


def _release_of(kv) -> dict | None:
    """release/current as the status shows it; a value that is not a release says so, and the
    rest of the status stands (trust the key, not the value)."""
    if kv is None:
        return None
    try:
        ops.release_of(kv.value)
        return kv.json()  # all of it: deploy adds where it rolled, by whom, when
    except BadValue as e:
        return {"error": str(e)}


def _site_roles(every: dict) -> dict:
    """site -> {cluster: role of its member}: what each building holds."""
    out: dict[str, dict[str, str]] = {}
    for scope, c in every.items():
        for name, m in (c.get("members") or {}).items():
            if m.get("site"):
                out.setdefault(m["site"], {})[scope] = m.get("role", "")
    return out


def _db_door_status(agent: Agent) -> dict | None:
    dd, keeper = agent.cfg.db_door, agent.db_door
    if dd is None:
        return None
    ports = dd.ports(agent.cfg.default_scope)
    per = (keeper.applied if keeper else None) or {}

    def one(scope: str) -> dict:
        r = per.get(scope)
        return {"port": ports[scope].port, "read_only_port": ports[scope].read_only_port,
                "writes_to": r.rw if r else None, "reads_from": list(r.ro) if r else [],
                "why": r.why if r else "not steered yet"}
    first = one(next(iter(ports)))
    # The first cluster's routes at the top (a door of one cluster), every cluster's under clusters.
    return {"host": dd.host, **first, "clusters": {scope: one(scope) for scope in ports},
            "error": (keeper.last_error or None) if keeper else None}
