"""Ops actions: pure plans (what to do and why not), and thin executors against etcd, Patroni's
REST API and the site's app. Every action works from any surviving site's agent."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Mapping

import httpx

from firebreak.control.detector import Verdict
from firebreak.control.failover import ClusterState
from firebreak.control.values import json_object
from firebreak.errors import BadValue, OpsError


@dataclass(frozen=True)
class Plan:
    ok: bool
    reason: str
    candidate: str | None = None


def switchover_plan(cluster: ClusterState, to: str, site_of: Mapping[str, str], verdicts: Mapping[str, Verdict]) -> Plan:
    """Move the primary to member `to` (a site name or Patroni member name)."""
    by_site = {site: member for member, site in site_of.items()}
    member = by_site.get(to, to)
    if cluster.leader is None:
        return Plan(False, "there is no primary right now; Patroni is electing one")
    if member == cluster.leader:
        return Plan(False, f"{to} already holds the primary")
    m = cluster.members.get(member)
    if m is None:
        return Plan(False, f"{to} has no running PostgreSQL member (known: {', '.join(sorted(cluster.members))})")
    if verdicts.get(site_of.get(member, member)) is not None and verdicts[site_of.get(member, member)].dead:
        return Plan(False, f"{to} is in a dead site")
    if m.state not in ("running", "streaming"):
        return Plan(False, f"{to} is {m.state or 'not running'}, not a healthy standby")
    if cluster.sync_standbys and member not in cluster.sync_standbys:
        return Plan(False, f"in synchronous mode the primary can only move to the synchronous standby "
                           f"({', '.join(cluster.sync_standbys)}), which has every acknowledged write; "
                           f"{to} is not it yet")
    return Plan(True, f"switch the primary from {cluster.leader} to {member}", member)


def sync_first(cluster: ClusterState, to: str, site_of: Mapping[str, str], verdicts: Mapping[str, Verdict]) -> str | None:
    """The member to make a synchronous standby before moving the primary to `to`, when that is
    all that stands in the way (a healthy standby in synchronous mode that Patroni has not chosen
    as its synchronous standby); None when the switchover is possible now or impossible anyway.
    A site that comes back after a failover rejoins as an asynchronous replica, so moving a
    primary back to it needs this first."""
    if switchover_plan(cluster, to, site_of, verdicts).ok or not cluster.sync_standbys:
        return None
    member = {site: m for m, site in site_of.items()}.get(to, to)
    widened = dataclasses.replace(cluster, sync_standbys=(*cluster.sync_standbys, member))
    return member if switchover_plan(widened, to, site_of, verdicts).ok else None


def evacuation_plan(cluster: ClusterState, site: str, site_of: Mapping[str, str],
                    verdicts: Mapping[str, Verdict]) -> Plan:
    """Drain a site; if it holds the primary, move the primary to a synchronous standby elsewhere."""
    leader_site = site_of.get(cluster.leader, cluster.leader) if cluster.leader else None
    if leader_site != site:
        return Plan(True, f"{site} does not hold the primary; only its traffic is drained")
    choices = [n for n in cluster.sync_standbys if site_of.get(n, n) != site] + \
              [n for n, m in cluster.members.items() if site_of.get(n, n) != site and n != cluster.leader]
    for name in choices:
        plan = switchover_plan(cluster, name, site_of, verdicts)
        if plan.ok:
            return Plan(True, f"drain {site} and move the primary to {name}", plan.candidate)
    return Plan(False, f"{site} holds the primary and no healthy standby elsewhere can take it")


def routing(sites: list[str], me: str, dead: set[str], drained: set[str],
            doors: Mapping[str, str | None] | None = None) -> dict:
    """Which sites' doors serve traffic, each site's own first; `doors` lists the serving
    doors' URLs, best first for a client near this site."""
    living = [s for s in sites if s not in dead and s not in drained]
    mine = ([me] if me in living else []) + [o for o in living if o != me]
    return {
        "serving": living,
        "dead": sorted(dead),
        "drained": sorted(drained),
        "order": {s: ([s] if s in living else []) + [o for o in living if o != s] for s in sites},
        "for_this_site": mine,
        "doors": {s: doors[s] for s in mine if doors and doors.get(s)},
    }


async def patroni_switchover(http: httpx.AsyncClient, patroni_urls: list[str], auth: tuple[str, str] | None,
                             leader: str, candidate: str) -> str:
    errors = []
    for url in patroni_urls:
        try:
            r = await http.post(url + "/switchover", json={"leader": leader, "candidate": candidate},
                                auth=auth, timeout=30)
        except httpx.HTTPError as e:
            errors.append(f"{url}: {e!r}")
            continue
        if r.status_code == 200:
            return r.text.strip()
        errors.append(f"{url}: HTTP {r.status_code} {r.text.strip()[:200]}")
    raise OpsError("no Patroni accepted the switchover: " + "; ".join(errors)
                   + "; check the cluster with `patronictl list` and try again")


async def patroni_sync_count(http: httpx.AsyncClient, url: str, auth: tuple[str, str] | None,
                             count: int | None) -> int | None:
    """Set Patroni's `synchronous_node_count` (None: back to its default) through one member's
    REST API; returns the value it had."""
    r = await http.get(url + "/config", auth=auth, timeout=5)
    r.raise_for_status()
    before = r.json().get("synchronous_node_count")
    r = await http.patch(url + "/config", json={"synchronous_node_count": count}, auth=auth, timeout=5)
    r.raise_for_status()
    return before


async def push_release(http: httpx.AsyncClient, app_url: str, admin_token: str, release: dict) -> None:
    r = await http.post(app_url + "/admin/release", json=release, timeout=1.0,
                        headers={"Authorization": f"Bearer {admin_token}"})
    r.raise_for_status()


async def push_primary_moved(http: httpx.AsyncClient, app_url: str, admin_token: str) -> None:
    r = await http.post(app_url + "/admin/primary-moved", timeout=1.0,
                        headers={"Authorization": f"Bearer {admin_token}"})
    r.raise_for_status()


def audit_entry(who: str, action: str, detail: dict, site: str, client: str | None, outcome: str) -> dict:
    return {"at": time.time(), "who": who, "action": action, "detail": detail, "site": site, "client": client,
            "outcome": outcome}


def release_record(version: str, notes: str = "") -> str:
    return json.dumps({"version": version, "notes": notes, "created": time.time()})


def release_of(raw: str) -> dict:
    """A release record as read from etcd (what release_record wrote, perhaps with more fields),
    reduced to what an app is told, or BadValue naming the field."""
    d = json_object(raw, "release")
    if not isinstance(d.get("version"), str) or not d["version"]:
        raise BadValue(f"release: an object with a version name is expected, got {raw[:80]!r}")
    if not isinstance(d.get("notes", ""), str) or not isinstance(d.get("created", 0), (int, float)):
        raise BadValue("release: notes must be text and created a time")
    return {k: d[k] for k in ("version", "notes", "created") if k in d}
