"""The Patroni clusters the agents protect, read from etcd: pure functions of the keys.

An agent is given Patroni namespaces (`/service/` by default in Patroni) and protects every
cluster (scope) it finds under them, so a cluster added to the estate is protected without
reconfiguring the agents. A single-cluster agent is given the cluster's own path instead.

Each member is placed in a site by, in order: the agent configuration's member names, a member
named after its site, or the host of the member's REST API or PostgreSQL address, when exactly
one site's endpoints use that host. A placement is kept once learnt: the failover rewrites a dead
primary's REST API address (failover.FenceApi), and its site must still be known after that.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from firebreak.control.failover import ClusterState, Ignored, Member, Sync
from firebreak.control.keys import PatroniKeys
from firebreak.errors import BadValue



def scopes(keys: Iterable[str], namespace: str) -> list[str]:
    """The cluster scopes under a Patroni namespace, in order of first appearance."""
    root = namespace.rstrip("/") + "/"
    found: dict[str, None] = {}
    for key in keys:
        if not key.startswith(root):
            continue
        parts = key[len(root):].split("/")
        if len(parts) >= 2 and parts[0] and parts[1] in PatroniKeys.MARKERS:
            found.setdefault(parts[0], None)
    return list(found)


def cluster_state(kvs: Mapping[str, object], pk: PatroniKeys, name: str = "") -> ClusterState:
    """One cluster from its keys (`kvs`: key -> etcd KV with value, mod_revision, lease). Each
    value is parsed into its type here, at the edge; one that does not parse is left out and
    listed in `ignored`, so the decisions downstream only ever see well-typed state."""
    ignored: list[Ignored] = []
    leader = kvs.get(pk.leader)
    sync = Sync(None, ())
    if (sync_kv := kvs.get(pk.sync)) is not None:
        try:
            sync = Sync.from_value(sync_kv.value)
        except BadValue as e:
            ignored.append(Ignored(pk.sync, sync_kv.mod_revision, str(e)))
    members = {}
    for key, kv in kvs.items():
        if key.startswith(pk.members):
            member = key.rsplit("/", 1)[1]
            try:
                members[member] = Member.from_value(member, kv.value, kv.mod_revision, kv.lease)
            except BadValue as e:
                ignored.append(Ignored(key, kv.mod_revision, str(e)))
    ttl, quorum_commit, check_timeline, paused = None, False, None, False
    if (config := kvs.get(pk.config)) is not None:
        try:
            doc = json.loads(config.value)
            quorum_commit = isinstance(doc, dict) and str(doc.get("synchronous_mode")).lower() == "quorum"
            if isinstance(doc, dict):
                check_timeline, paused = _patroni_bool(doc.get("check_timeline")), _patroni_bool(doc.get("pause"))
            ttl = int(doc.get("ttl"))
        except (ValueError, TypeError, AttributeError):
            ttl = None  # only used to wake Patroni; a config without one is not an error
    history = kvs.get(pk.history)
    return ClusterState(leader=leader.value if leader else None, leader_revision=leader.mod_revision if leader else 0,
                        sync_leader=sync.leader, sync_standbys=sync.standbys, members=members, name=name, ttl=ttl,
                        ignored=tuple(ignored), leader_lease=leader.lease if leader else 0,
                        quorum_commit=quorum_commit, sync_quorum=sync.quorum,
                        history=history.value if history else None,
                        history_revision=history.mod_revision if history else 0, check_timeline=check_timeline,
                        paused=paused)


def _patroni_bool(value: object) -> bool:
    """A /config switch as Patroni reads it (utils.parse_bool: on, true, yes, 1 in any case;
    anything else, or nothing, is off)."""
    return str(value).lower() in ("true", "yes", "on", "1")


def commit_path(found: Mapping[str, ClusterState]) -> dict[str, tuple[str, str]]:
    """"<scope>/<member>" -> (scope, member) for every server a commit waits for: each cluster's
    primary and synchronous standbys. The agents probe these PostgreSQL servers and vote on their
    stalls under these names."""
    return {f"{scope}/{name}": (scope, name) for scope, c in found.items()
            for name in (c.leader, *c.sync_standbys) if name}


def clusters_under(kvs: Mapping[str, object], namespace: str) -> dict[str, tuple[PatroniKeys, ClusterState]]:
    """Every cluster under a namespace: scope -> (its keys, its state)."""
    out = {}
    for scope in scopes(kvs, namespace):
        pk = PatroniKeys(namespace.rstrip("/") + "/" + scope)
        mine = {k: v for k, v in kvs.items() if k.startswith(pk.root)}
        out[scope] = (pk, cluster_state(mine, pk, scope))
    return out


def host_of(url: str) -> str | None:
    try:
        return urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None


def place_members(cluster: ClusterState, named: Mapping[str, str], site_hosts: Mapping[str, str],
                  known: Mapping[str, str] | None = None) -> dict[str, str]:
    """member -> site for every member of `cluster` that can be placed. `named`: the
    configuration's member -> site (a site's own name included); `site_hosts`: host -> site, for
    hosts that belong to exactly one site; `known`: placements learnt earlier, kept."""
    out = dict(known or {})
    for name, m in cluster.members.items():
        if name in out:
            continue
        if name in named:
            out[name] = named[name]
            continue
        raw_conn = ""
        try:
            raw_conn = (json.loads(m.raw) or {}).get("conn_url", "")
        except (ValueError, AttributeError):
            pass
        for url in (m.api_url, raw_conn):
            site = site_hosts.get(host_of(url) or "")
            if site is not None:
                out[name] = site
                break
    return out


def unique_hosts(endpoints: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """host -> site, from each site's endpoint URLs, for hosts that only one site uses."""
    seen: dict[str, set[str]] = {}
    for site, urls in endpoints.items():
        for url in urls:
            h = host_of(url)
            if h:
                seen.setdefault(h, set()).add(site)
    return {h: next(iter(s)) for h, s in seen.items() if len(s) == 1}
