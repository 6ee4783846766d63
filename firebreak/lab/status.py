"""What the running lab looks like: sites, roles, URLs, credentials, health (a pure test of the
observed state), and its logs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from firebreak.errors import InputError, LabError, Problem
from firebreak.inputs import suggest
from firebreak.lab import access, procs
from firebreak.lab.layout import PORTS, LabLayout
from firebreak.lab.state import LabState, lab_home, load, load_secrets


def require(home: Path | None) -> LabState:
    state = load(home or lab_home())
    if state is None:
        raise LabError("no lab is running here; start one with `firebreak lab up`")
    return state


def cluster_members(layout: LabLayout, skip: set[str] | None = None) -> list[dict]:
    """Patroni's view of the cluster, asked of the first site that answers."""
    for site in layout.sites:
        if skip and site.name in skip:
            continue
        try:
            r = httpx.get(site.url("patroni") + "/cluster", timeout=1.0)
            if r.status_code == 200:
                return r.json().get("members", [])
        except (httpx.HTTPError, ValueError):
            continue
    return []


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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        primary = next((m["name"] for m in cluster_members(require(home).layout) if m.get("role") == "leader"), None)
        leader = etcd_leader_site(home)
        if primary is not None and leader is not None and leader != primary:
            return True
        time.sleep(0.3)
    return False


def etcdctl_flags(role: str = access.ROOT, home: Path | None = None) -> list[str]:
    """etcdctl's TLS and user flags for the running lab's etcd, acting as `role`."""
    return access.etcdctl_flags(require(home).layout, role)


def healthy(sites: dict[str, dict]) -> bool:
    """Every site up, a primary, every other member streaming, one of them synchronous. Pure: the
    `sites` part of status()."""
    roles = [s["postgres"]["role"] for s in sites.values()]
    return ("primary" in roles and "sync_standby" in roles and all(s["state"] == "up" for s in sites.values())
            and all(s["postgres"]["state"] == "streaming" for s in sites.values() if s["postgres"]["role"] != "primary"))


REFERENCE_SERVICE = "claims-app"  # the reference service every site runs behind its door


def clusters_doc(name: str, sites: dict[str, dict], dsn: str) -> dict:
    """`clusters` of lab status: each Patroni cluster's primary, synchronous standby and members'
    roles by site, and its multi-host DSN. Pure: the `sites` part of status()."""
    roles = {n: s["postgres"]["role"] for n, s in sites.items()}
    return {name: {"primary": next((n for n, r in roles.items() if r == "primary"), None),
                   "sync_standby": next((n for n, r in roles.items() if r == "sync_standby"), None),
                   "members": roles, "dsn": dsn}}


def services_doc(sites: dict[str, dict]) -> dict:
    """`services` of lab status: each service, the sites that run it, its URL through each site's door."""
    return {REFERENCE_SERVICE: {"sites": list(sites), "urls": {n: s["door"] for n, s in sites.items()}}}


def status(home: Path | None = None) -> dict:
    state = require(home)
    layout = state.layout
    secrets = load_secrets(state.home)
    off = {n for n, s in state.sites.items() if s.power == "off"}
    members = {m["name"]: m for m in cluster_members(layout, skip=off)}
    sites = {}
    for site in layout.sites:
        m = members.get(site.name)
        role = "down"
        if m is not None and site.name not in off and m.get("state") in ("running", "streaming"):
            role = {"leader": "primary", "sync_standby": "sync_standby"}.get(m.get("role"), "replica")
        st = state.sites[site.name]
        sites[site.name] = {
            "state": st.power,
            "address": site.address,
            "netns": site.netns,
            "etcd": site.url("etcd"),
            "patroni": site.url("patroni"),
            "postgres": {"host": site.address, "port": site.pg_port, "role": role,
                         "state": (m or {}).get("state") if site.name not in off else None,
                         "lag": (m or {}).get("lag") if site.name not in off else None},
            "app": site.url("app"),
            "door": site.url("door"),
            "door_https": site.url("door_tls"),  # the same door over TLS (the lab's CA): for reviewers
            # The database door: clients need only this host and port (and a reconnect loop).
            "db_door": {"host": site.address, "port": PORTS["db_door"], "read_only_port": PORTS["db_door_ro"]},
            "console": site.url("console") if state.agents else None,
            "processes": {p.component: {"pid": p.pid, "alive": procs.alive(p)} for p in st.procs},
            "silenced": st.silenced if st.power == "off" else None,
            "isolated": st.isolated or None,
        }
    primary = next((n for n, s in sites.items() if s["postgres"]["role"] == "primary"), None)
    return {
        "lab_id": state.lab_id,
        "net": state.net,
        "phase": state.phase,
        "home": str(state.home),
        "topology": state.topology,
        "primary": primary,
        "healthy": healthy(sites),  # every cluster (the lab runs one)
        "sites": sites,
        "clusters": clusters_doc(state.cluster, sites, layout.dsn("claims", secrets.app)),
        "services": services_doc(sites),
        "postgres_dsn": layout.dsn("claims", secrets.app),
        "etcd_endpoints": layout.etcd_endpoints,
        # The locked etcd: its CA and each role's client certificate, key, user and password file.
        "etcd_access": access.status_doc(layout),
        "app_urls": [s.url("app") for s in layout.sites],
        "door_urls": [s.url("door") for s in layout.sites],
        "db_door_dsns": {s.name: layout.door_dsn(s.name, "claims", secrets.app) for s in layout.sites},
    }


LOG_COMPONENTS = ("etcd", "patroni", "postgres", "dbdoor", "app", "door", "agent")


def log_paths(site_name: str, component: str | None = None, home: Path | None = None) -> list[Path]:
    home = home or lab_home()
    state = load(home)
    names = state.site_names if state else sorted(p.name for p in (home / "sites").glob("*"))
    if site_name not in names:
        raise InputError(Problem("site", "", f"unknown site '{site_name}'{suggest(site_name, names)}"))
    if component is not None and component not in LOG_COMPONENTS:
        raise InputError(Problem("component", "", f"unknown component '{component}'"
                                                  f"{suggest(component, LOG_COMPONENTS)}; "
                                                  f"choose one of {', '.join(LOG_COMPONENTS)}"))
    base = home / "sites" / site_name / "log"
    wanted = [component] if component else list(LOG_COMPONENTS)
    out = []
    for c in wanted:
        p = base / "postgres" / "postgresql.log" if c == "postgres" else base / f"{c}.log"
        if p.exists():
            out.append(p)
    return out
