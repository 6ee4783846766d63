"""What the running lab looks like: sites, roles, URLs, credentials, health (a pure test of the
observed state), and its logs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from firebreak.errors import InputError, LabError, Problem
from firebreak.inputs import suggest
from firebreak.lab import access, procs
from firebreak.lab.config import client_dsn, cluster_dsn
from firebreak.lab.layout import LabLayout
from firebreak.lab.state import TOPOLOGY_FILE, LabState, lab_home, load, load_secrets


def require(home: Path | None) -> LabState:
    state = load(home or lab_home())
    if state is None:
        raise LabError("no lab is running here; start one with `firebreak lab up`")
    return state


def cluster_members(layout: LabLayout, skip: set[str] | None = None, cluster=None) -> list[dict]:
    """Patroni's view of a cluster (the default lab's one when `cluster` is None), by members_view."""
    return members_view({site.name: cluster.patroni_url(site) if cluster is not None else site.url("patroni")
                         for site in layout.sites
                         if not (skip and site.name in skip) and (cluster is None or site.name in cluster.sites)})


def members_view(urls: dict[str, str], timeout: float = 1.0) -> list[dict]:
    """Patroni's /cluster members, asked of every member's REST API (site -> URL) at once and
    chosen by cluster_view; [] when none answers."""
    def ask(url: str) -> list[dict] | None:
        try:
            r = httpx.get(url + "/cluster", timeout=timeout)
            return r.json().get("members", []) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        answers = dict(zip(urls, pool.map(ask, urls.values())))
    return cluster_view([(n, a) for n, a in answers.items() if a is not None])


def cluster_view(answers: list[tuple[str, list[dict]]]) -> list[dict]:
    """Of the members' answers to /cluster (in site order), the one to believe: that of the leader
    on the newest timeline (an isolated old primary may still name itself, on the old one), by
    its own Patroni (it renews the leader key every cycle, so its view of etcd is current); when
    the leader did not answer, the gloomiest answer naming it. A member just back from isolation
    answers from what it knew before: in a chaos run the lab read healthy 0.3 s after a heal,
    while that member went on to pg_rewind for 27 s. Pure."""
    if not answers:
        return []

    def leader_of(members: list[dict]) -> dict | None:
        return next((m for m in members if m.get("role") in LEADER_ROLES), None)

    def timeline(m: dict) -> int:
        return m.get("timeline") if isinstance(m.get("timeline"), int) else -1
    named = [(site, members, leader_of(members)) for site, members in answers]
    leaders = [lead for _, _, lead in named if lead is not None]
    if not leaders:
        return answers[0][1]
    votes = Counter(lead.get("name") for lead in leaders)
    best = max(leaders, key=lambda lead: (timeline(lead), votes[lead.get("name")]))["name"]
    own = [members for site, members, lead in named if lead is not None and lead.get("name") == best == site]
    if own:
        return own[0]
    naming = [members for _, members, lead in named if lead is not None and lead.get("name") == best]
    return min(naming, key=lambda members: sum(m.get("state") in ("running", "streaming") for m in members))


def etcd_client(role: str = access.ROOT, home: Path | None = None, **kw):
    """An etcd client for the running lab, acting as `role` (drills, benchmarks, `firebreak ops`)."""
    return access.client(require(home).layout, role, **kw)


def etcd_leader_site(home: Path | None = None) -> str | None:
    """The site whose etcd member leads raft now (None when no member answers)."""
    from firebreak.control.etcd import EtcdError

    async def ask() -> str | None:
        etcd = etcd_client(home=home, timeout=1)
        try:
            leader, members = await etcd.leader_and_members()
            return next((m["name"] for m in members if m["ID"] == leader), None)
        except EtcdError:
            return None
        finally:
            await etcd.close()
    return asyncio.run(ask())


def settled(home: Path | None = None, timeout: float = 20.0) -> bool:
    """With agents: wait until they have moved etcd's raft leadership out of the primary's site,
    the steady state they keep (losing the site of both the primary and etcd's leader costs an
    etcd election, about a second, before anyone can act). False if it did not happen in time."""
    from firebreak.control.placement import etcd_leader_target

    state = require(home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        primaries, syncs = [], []
        for c in state.plan.clusters:
            members = cluster_members(state.layout, cluster=c)
            primaries += [m["name"] for m in members if m.get("role") == "leader"]
            syncs += [m["name"] for m in members if m.get("role") in SYNC_ROLES]
        leader = etcd_leader_site(home)
        if primaries and leader is not None and etcd_leader_target(leader, primaries, syncs, state.site_names) is None:
            return True
        time.sleep(0.3)
    return False


def settled_coordinator(consoles: dict[str, str]) -> str | None:
    """The coordinator, once every console names the same one and it holds the lease itself
    (an agent restarted a moment ago may still be taking over); None until then."""
    try:
        docs = {n: httpx.get(u + "/api/status", timeout=5).json() for n, u in consoles.items()}
    except httpx.HTTPError:
        return None
    named = {d["coordinator"] for d in docs.values()}
    if len(named) != 1 or None in named:
        return None
    holder = named.pop()
    return holder if docs.get(holder, {}).get("is_coordinator") else None


def etcdctl_flags(role: str = access.ROOT, home: Path | None = None) -> list[str]:
    """etcdctl's TLS and user flags for the running lab's etcd, acting as `role`."""
    return access.etcdctl_flags(require(home).layout, role)


def healthy(sites: dict[str, dict], clusters: dict[str, dict] | None = None,
            sync: dict[str, bool] | None = None) -> bool:
    """Every site up and every cluster healthy (healthy_clusters); without `clusters`, the one
    cluster whose members are the sites' `postgres`. Pure: parts of status()."""
    if clusters is None:
        roles = {n: s["postgres"]["role"] for n, s in sites.items()}
        clusters = {"": {"primary": next((n for n, r in roles.items() if r == "primary"), None),
                         "sync_standby": next((n for n, r in roles.items() if r == "sync_standby"), None),
                         "members": roles, "states": {n: s["postgres"]["state"] for n, s in sites.items()}}}
    return all(s["state"] == "up" for s in sites.values()) and healthy_clusters(clusters, sync or {})


REFERENCE_SERVICE = "claims-app"  # the reference service every site runs behind its door


def clusters_doc(name: str, sites: dict[str, dict], dsn: str) -> dict:
    """`clusters` of lab status for one cluster: its primary, synchronous standby and members'
    roles by site, and its multi-host DSN. Pure: `sites` maps a site to its member's
    {"role": ...} (the `postgres` part of status()'s sites)."""
    roles = {n: s["postgres"]["role"] for n, s in sites.items()}
    return {name: {"primary": next((n for n, r in roles.items() if r == "primary"), None),
                   "sync_standby": next((n for n, r in roles.items() if r == "sync_standby"), None),
                   "members": roles, "dsn": dsn}}


# Patroni's /cluster roles of a cluster's leader: a primary, or a standby cluster's leader.
LEADER_ROLES = ("leader", "standby_leader")
# Patroni's /cluster roles of a standby that acknowledges commits: the one named standby of
# synchronous_mode, or each voter of quorum commit (ANY 1 of them acknowledges).
SYNC_ROLES = ("sync_standby", "quorum_standby")


def member_role(m: dict | None, off: bool) -> str:
    """A member as `lab status` names its role: primary, sync_standby, quorum_standby, replica, or down."""
    if m is None or off or m.get("state") not in ("running", "streaming"):
        return "down"
    role = m.get("role")
    return "primary" if role == "leader" else role if role in SYNC_ROLES else "replica"


def services_doc(sites: dict[str, dict], plan=None) -> dict:
    """`services` of lab status: each service, the sites that run it, its URL through each site's door."""
    if plan is None or not plan.estate:
        return {REFERENCE_SERVICE: {"sites": list(sites), "urls": {n: s["door"] for n, s in sites.items()}}}
    return {svc.name: {"sites": list(svc.sites), "urls": {n: f"{s['door']}/s/{svc.name}/" for n, s in sites.items()}}
            for svc in plan.services}


def healthy_clusters(clusters: dict[str, dict], sync: dict[str, bool]) -> bool:
    """Every cluster has a primary, every other member streaming, and a synchronous standby when
    it is synchronous. Pure: `clusters` is status()'s, with `states` (member -> Patroni state)."""
    for name, c in clusters.items():
        roles = c["members"]
        voters = [m for m, r in roles.items() if r == "quorum_standby"]
        if c["primary"] is None or (sync.get(name, True) and c["sync_standby"] is None and not voters):
            return False
        if any(r == "down" or c["states"].get(m) != "streaming" for m, r in roles.items() if r != "primary"):
            return False
    return True


def client_dsns_of(layout: LabLayout, plan, password: str) -> tuple[dict, dict]:
    """Each cluster's DSNs by site, `(through the doors, what an ordinary client uses)`: the
    first only for the clusters that declare doors (the lab runs no other door); the second for
    every cluster, as the estate's services connect (config.client_dsn). Pure."""
    clients = {c.name: {s.name: client_dsn(layout, s.name, c, password) for s in layout.sites}
               for c in plan.clusters}
    return {c.name: clients[c.name] for c in plan.door_clusters}, clients


def status(home: Path | None = None) -> dict:
    state = require(home)
    layout = state.layout
    secrets = load_secrets(state.home)
    plan = state.plan
    off = {n for n, s in state.sites.items() if s.power == "off"}
    every = {c.name: {m["name"]: m for m in cluster_members(layout, skip=off, cluster=c)} for c in plan.clusters}
    first = plan.clusters[0]
    members = every[first.name]
    door = plan.door_clusters[0] if plan.door_clusters else None  # the first cluster on the doors
    sites = {}
    for site in layout.sites:
        m = members.get(site.name)
        role = member_role(m, site.name in off)
        st = state.sites[site.name]
        sites[site.name] = {
            "state": st.power,
            "address": site.address,
            "netns": site.netns,
            "etcd": site.url("etcd"),
            "patroni": site.url("patroni"),
            "postgres": {"host": site.address, "port": first.port("postgres"), "role": role,
                         "state": (m or {}).get("state") if site.name not in off else None,
                         "lag": (m or {}).get("lag") if site.name not in off else None},
            "app": site.url("app"),
            "app_admin": site.url("app_admin"),  # the app's admin listener: the public door does not forward there
            "door": site.url("door"),
            "door_https": site.url("door_tls"),  # the same door over TLS (the lab's CA): for reviewers
            # The database door: clients need only this host and port (and a reconnect loop).
            # None where the lab runs none (no cluster declares doors): a door absent by design
            # is not a door down.
            "db_door": {"host": site.address, "port": door.port("db_door"), "read_only_port": door.port("db_door_ro")}
                       if door is not None else None,
            "console": site.url("console") if state.agents else None,
            "processes": {p.component: {"pid": p.pid, "alive": procs.alive(p)} for p in st.procs},
            "silenced": st.silenced if st.power == "off" else None,
            "isolated": st.isolated or None,
        }
    primary = next((n for n, s in sites.items() if s["postgres"]["role"] == "primary"), None)
    clusters, states = {}, {}
    for c in plan.clusters:
        roles = {n: {"postgres": {"role": member_role(every[c.name].get(n), n in off)}} for n in c.sites}
        doc = clusters_doc(c.name, roles, cluster_dsn(layout, c, c.app_user, secrets.app))[c.name]
        clusters[c.name] = doc
        states[c.name] = {n: (every[c.name].get(n) or {}).get("state") for n in c.sites if n not in off}
    door_dsns, client_dsns = client_dsns_of(layout, plan, secrets.app)
    return {
        "lab_id": state.lab_id,
        "net": state.net,
        "door_kind": state.door,
        # where the sites reach a listener of this machine's (a webhook subscriber: lab.subscribe)
        "host_address": layout.host_address,
        "phase": state.phase,
        "home": str(state.home),
        "topology": state.topology,
        "primary": primary,
        "healthy": healthy(sites, {n: {**c, "states": states[n]} for n, c in clusters.items()},
                           {c.name: c.sync for c in plan.clusters}),  # every cluster
        "sites": sites,
        "clusters": clusters,
        "services": services_doc(sites, plan),
        "postgres_dsn": layout.dsn("claims", secrets.app),
        "etcd_endpoints": layout.etcd_endpoints,
        # The locked etcd: its CA and each role's client certificate, key, user and password file.
        "etcd_access": access.status_doc(layout),
        "app_urls": [s.url("app") for s in layout.sites],
        "door_urls": [s.url("door") for s in layout.sites],
        "db_door_dsns": {s.name: layout.door_dsn(s.name, "claims", secrets.app) for s in layout.sites}
                        if door is not None else {},
        # Every cluster that declares doors: {cluster: {site: DSN through that site's database
        # door}}; every cluster: the DSN an ordinary client in each site uses (its site's door, or
        # the members' hosts where the cluster has no doors); and its members' Patroni REST APIs.
        "cluster_door_dsns": door_dsns,
        "cluster_client_dsns": client_dsns,
        "cluster_patroni": {c.name: {n: c.patroni_url(layout.site(n)) for n in c.sites} for c in plan.clusters},
        # Built from a topology (`lab up --topology`): drills judge check's predictions against it.
        "estate": plan.estate,
        "topology_file": str(state.home / TOPOLOGY_FILE) if plan.estate else state.topology,
    }


LOG_COMPONENTS = ("etcd", "patroni", "postgres", "dbdoor", "app", "door", "agent")


def log_paths(site_name: str, component: str | None = None, home: Path | None = None) -> list[Path]:
    home = home or lab_home()
    state = load(home)
    names = state.site_names if state else sorted(p.name for p in (home / "sites").glob("*"))
    if site_name not in names:
        raise InputError(Problem("site", "", f"unknown site '{site_name}'{suggest(site_name, names)}"))
    if component is not None and component.partition("@")[0] in ("patroni", "postgres", "svc") and "@" in component:
        # an estate lab's per-cluster Patroni and PostgreSQL, and its services
        kind, _, name = component.partition("@")
        base = home / "sites" / site_name / "log"
        p = base / f"postgres-{name}" / "postgresql.log" if kind == "postgres" else base / f"{component}.log"
        return [p] if p.exists() else []
    if component is not None and component not in LOG_COMPONENTS:
        raise InputError(Problem("component", "", f"unknown component '{component}'"
                                                  f"{suggest(component, LOG_COMPONENTS)}; "
                                                  f"choose one of {', '.join(LOG_COMPONENTS)} (an estate lab: "
                                                  "patroni@CLUSTER, postgres@CLUSTER, svc@SERVICE)"))
    base = home / "sites" / site_name / "log"
    wanted = [component] if component else list(LOG_COMPONENTS)
    out = []
    for c in wanted:
        p = base / "postgres" / "postgresql.log" if c == "postgres" else base / f"{c}.log"
        if p.exists():
            out.append(p)
    if component is None:  # an estate lab's per-cluster and per-service logs too
        out += sorted(p for p in base.glob("*@*.log"))
    return out


def postgres_backends(home: Path | None = None) -> dict[str, list[str]]:
    """Each running PostgreSQL server of the lab ("<site>/<its data directory under the site>")
    -> its children's process titles, read from /proc: what every connection is doing (idle, idle
    in a transaction, waiting for a lock or for the synchronous standby) even when the server has
    no connection slot left to ask pg_stat_activity with. Reads only the lab's own servers."""
    from firebreak.lab.state import lab_home

    root = (home or lab_home()) / "sites"
    servers: dict[int, str] = {}
    for pidfile in root.glob("*/**/postmaster.pid"):
        try:
            servers[int(pidfile.read_text().split()[0])] = str(pidfile.parent.relative_to(root))
        except (OSError, ValueError, IndexError):
            continue  # stopped, or being written
    out: dict[str, list[str]] = {name: [] for name in servers.values()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after it.
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid in servers:
                out[servers[ppid]].append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return out
