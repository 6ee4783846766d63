"""Bringing the lab up from a topology and taking it down, leaving nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import secrets as pysecrets
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import httpx
import yaml

from firebreak.errors import InputError, LabError, Problem
from firebreak.lab import access, net, procs, runtime
from firebreak.lab.components import (door_port, etcd_ok, http_ok, proc_of, ready_probe, start, stop_everything,
                                      tail, tcp_ok, wait_component)
from firebreak.lab.config import (Secrets, agent_config, cluster_dsn, db_door_config_of, door_config_of,
                                  haproxy_door_config_of, patroni_config, superuser_dsn)
from firebreak.lab.layout import PORTS, LabLayout, make_layout
from firebreak.lab.plan import ClusterPlan, LabPlan, default_plan, plan_lab
from firebreak.lab.state import (TOPOLOGY_FILE, LabState, SiteState, clear, lab_home, load, save, save_secrets,
                                 write_private)
from firebreak.lab.status import SYNC_ROLES, cluster_members, settled
from firebreak.resources import example
from firebreak.topology import load_topology

Progress = Callable[[str], None]
DEFAULT_TOPOLOGY = example("firebreak-lab.yaml")
UP_TIMEOUT = 120.0


def _quiet(_: str) -> None:
    pass


class AlreadyUp(LabError):
    exit_code = 0


def up(topology: Path | None = None, net_mode: str = "auto", agents: bool = True,
       progress: Progress = _quiet, home: Path | None = None, replication: str | None = None,
       door: str = "haproxy") -> LabState:
    home = home or lab_home()
    topo_path = topology or DEFAULT_TOPOLOGY
    topo = load_topology(topo_path, str(topology) if topology else "examples/firebreak-lab.yaml")
    if len(topo.sites) < 3:
        raise LabError(f"{topo_path}: the lab needs at least 3 sites for etcd and Patroni to survive the loss "
                       f"of one; it has {len(topo.sites)}")
    # With a topology, the lab is that estate; what it cannot build is refused here, before
    # anything starts or is even looked at (InputError, exit 2, every field named). Without, it
    # is today's lab.
    if replication is not None and topology is not None:
        raise InputError(Problem("--replication", "", "a topology declares each database's replication; "
                                                      "set `replication:` there instead"))
    plan = plan_lab(topo) if topology is not None else default_plan(topo, replication or "sync")
    if door not in ("caddy", "haproxy"):
        raise InputError(Problem("--door", "", f"a front door is caddy or haproxy, not {door!r}"))
    plan = replace(plan, door=door)

    existing = load(home)
    if existing is not None:
        if any(procs.alive(p) for s in existing.sites.values() for p in s.procs) or existing.phase == "up":
            raise AlreadyUp(f"the lab is already up ({len(existing.sites)} sites, {existing.net} mode, "
                            f"home {home}); nothing changed. `firebreak lab down` first to start afresh")
        stop_everything(existing, progress)  # leftovers of a crashed run
    mode = net.resolve_mode(net_mode)
    lab_id = pysecrets.token_hex(4)
    user = runtime.lab_user()
    python = runtime.runtime_python(user, progress)
    home = runtime.reachable_home(home, user)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o711)  # the lab's user must traverse it; nobody may list it
    layout = make_layout(home, mode, list(topo.sites), lab_id)

    # A fresh lab every time: data from an earlier run (kept by `down` for inspection) goes.
    if (home / "sites").exists():
        shutil.rmtree(home / "sites")
    secrets = Secrets(superuser=pysecrets.token_urlsafe(18), replication=pysecrets.token_urlsafe(18),
                      app=pysecrets.token_urlsafe(18), cluster_token=lab_id, patroni_api=pysecrets.token_urlsafe(18),
                      app_admin=pysecrets.token_urlsafe(24), session=pysecrets.token_urlsafe(32))
    save_secrets(home, secrets)
    state = LabState(lab_id=lab_id, net=mode, topology=str(topo_path), site_names=list(topo.sites), home=home,
                     cluster=plan.clusters[0].name, estate=plan.estate,
                     replication="quorum" if plan.clusters[0].quorum_commit else "sync", door=door,
                     user=user, agents=agents, sites={s: SiteState() for s in topo.sites}, python=python)
    if plan.estate:
        (home / TOPOLOGY_FILE).write_text(Path(topo_path).read_text())
    save(state)
    try:
        access.prepare(layout)
        _prepare_dirs(layout, secrets, user, python, plan)
        progress(f"network: {mode}" + (" (one namespace per site)" if mode == "netns" else " (127.0.N.1 per site)"))
        if missing := net.setup(layout):
            progress(f"network: this kernel lacks {', '.join(missing)}; the lab runs without "
                     "(docs/DEPLOY.md, \"Kernel settings\", says what that costs)")
        for site in layout.sites:
            start(state, layout, site, "etcd", secrets)
        for site in layout.sites:
            wait_component(state, layout, site, "etcd", lambda s=site: etcd_ok(layout, s))
        progress(f"etcd: {len(layout.sites)} members, quorum formed")
        asyncio.run(access.lock(layout, [c.scope for c in plan.clusters], discover=plan.estate))
        progress(f"etcd: locked (TLS, client certificates, one user per role: {', '.join(access.roles(layout))})")
        secrets = _create_operator(layout, secrets)
        _start_clusters(state, layout, plan, secrets, progress)
        _start_db_doors(state, layout, plan, secrets, progress)
        _start_services(state, layout, plan, secrets, progress)
        for site in layout.sites:
            start(state, layout, site, "door", secrets)
        for site in layout.sites:
            wait_component(state, layout, site, "door", lambda s=site: http_ok(s.url("door") + "/healthz"))
        proxy = "HAProxy" if plan.door == "haproxy" else "Caddy"
        progress(f"front doors ({proxy}): serving on port {PORTS['door']} in every site")
        if agents:
            for site in layout.sites:
                start(state, layout, site, "agent", secrets)
            for site in layout.sites:
                wait_component(state, layout, site, "agent", lambda s=site: http_ok(s.url("console") + "/healthz"))
            progress("site agents: running in every site")
            if settled(home):
                progress("site agents: etcd's leader placed outside the primary's site")
        state.phase = "up"
        save(state)
        return state
    except BaseException as e:
        progress("start failed; stopping everything this run started")
        stop_everything(state, _quiet)
        if isinstance(e, LabError):
            raise
        if isinstance(e, KeyboardInterrupt):
            raise
        raise LabError(f"lab up failed: {e}") from e


def _create_operator(layout: LabLayout, secrets: Secrets) -> Secrets:
    """The lab's operator, 'lab', with a fresh token: its argon2 hash goes to etcd, the token
    only to the lab's private secrets file. No default password anywhere."""
    from dataclasses import replace

    from firebreak.control.auth import add_operator
    from firebreak.control.etcd import Etcd
    from firebreak.control.keys import Keys

    async def go() -> str:
        etcd = Etcd(layout.etcd_endpoints, timeout=3, access=access.load(layout, "ops"))
        try:
            return await add_operator(etcd, Keys(), "lab", "admin")
        finally:
            await etcd.close()
    secrets = replace(secrets, ops_token=asyncio.run(go()))
    save_secrets(layout.home, secrets)
    return secrets


def _prepare_dirs(layout: LabLayout, secrets: Secrets, user: tuple[int, int] | None, python: str,
                  plan: LabPlan) -> None:
    for site in layout.sites:
        for sub in ("log/postgres", "run", "etcd"):
            (site.dir / sub).mkdir(parents=True, exist_ok=True)
        for cluster in plan.clusters:
            if site.name not in cluster.sites:
                continue
            cluster.dir(site).mkdir(parents=True, exist_ok=True)
            write_private(cluster.dir(site) / "patroni.yml", yaml.safe_dump(
                patroni_config(layout, site, secrets, runtime.pg_bin_dir(python), access.load(layout, "patroni"),
                               cluster), sort_keys=False))
        write_private(site.dir / "agent.yml", yaml.safe_dump(agent_config(layout, site, secrets, plan),
                                                             sort_keys=False))
        if plan.door == "haproxy":
            (site.dir / "door.cfg").write_text(haproxy_door_config_of(layout, site, plan))
        else:
            (site.dir / "door.json").write_text(json.dumps(door_config_of(layout, site, plan), indent=2))
        if plan.door_clusters:  # no file for a door the lab does not run
            (site.dir / "db-door.cfg").write_text(db_door_config_of(layout, site, plan))
        os.chmod(site.dir / "run", 0o700)
        os.chmod(site.dir / "etcd", 0o700)
        runtime.chown_tree(site.dir, user)
    # Every role's credentials belong to the lab's user, which runs etcd, Patroni, agents and apps.
    runtime.chown_tree(layout.home / "access", user)
    runtime.chown_tree(layout.home / "pki", user)


def _start_clusters(state: LabState, layout: LabLayout, plan: LabPlan, secrets: Secrets,
                    progress: Progress) -> None:
    """Every cluster at once: each bootstraps in its topology's primary site, the other members
    clone from it once it leads; then each gets its database and schema."""
    for cluster in plan.clusters:
        start(state, layout, layout.site(cluster.primary), cluster.component, secrets)
    for cluster in plan.clusters:
        _wait_leader(state, layout, cluster)
        for name in cluster.sites[1:]:
            start(state, layout, layout.site(name), cluster.component, secrets)
    for cluster in plan.clusters:
        _wait_cluster(state, layout, cluster, progress)
    if plan.estate:
        for cluster in plan.clusters:
            _migrate_estate(layout, cluster, secrets)
        progress(f"postgres: {len(plan.clusters)} clusters ({', '.join(c.name for c in plan.clusters)}), "
                 "each with its database")
    else:
        _migrate_claims(layout, secrets)
        progress("postgres: schema migrated")


def _start_db_doors(state: LabState, layout: LabLayout, plan: LabPlan, secrets: Secrets,
                    progress: Progress) -> None:
    """A database door (HAProxy) in each site that runs one (LabPlan.components): none when no
    cluster declares doors, and then its clients reach its members directly."""
    sites = [site for site in layout.sites if "dbdoor" in plan.components(site.name)]
    for site in sites:
        start(state, layout, site, "dbdoor", secrets)
    port = door_port(plan)
    for site in sites:
        wait_component(state, layout, site, "dbdoor", lambda s=site: tcp_ok(s.address, port))
    doorless = [c.name for c in plan.clusters if not c.doors]
    if not sites:
        progress("database doors: none (no database declares doors: true); clients reach the members directly")
        return
    if not plan.estate:
        progress(f"database doors (HAProxy): read-write on port {PORTS['db_door']}, read-only on "
                 f"{PORTS['db_door_ro']} in every site")
        return
    progress("database doors (HAProxy) in every site, read-write/read-only: "
             + ", ".join(f"{c.name} :{c.port('db_door')}/:{c.port('db_door_ro')}" for c in plan.door_clusters)
             + (f"; none for {', '.join(doorless)} (doors not declared: clients reach its members directly)"
                if doorless else ""))


def _start_services(state: LabState, layout: LabLayout, plan: LabPlan, secrets: Secrets,
                    progress: Progress) -> None:
    if not plan.estate:
        for site in layout.sites:
            start(state, layout, site, "app", secrets)
        for site in layout.sites:
            wait_component(state, layout, site, "app", lambda s=site: http_ok(s.url("app") + "/healthz"))
        progress("reference service: ready in every site")
        return
    for svc in plan.services:
        for name in svc.sites:
            start(state, layout, layout.site(name), svc.component, secrets)
    for svc in plan.services:
        for name in svc.sites:
            site = layout.site(name)
            wait_component(state, layout, site, svc.component, ready_probe(layout, site, svc.component, plan))
    progress(f"services: {', '.join(s.name for s in plan.services)} (the reference estate service), "
             "each at /s/<name>/ on every site's door")


def _wait_leader(state: LabState, layout: LabLayout, cluster: ClusterPlan) -> None:
    site = layout.site(cluster.primary)
    url = cluster.patroni_url(site) + "/primary"

    def leads() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    wait_component(state, layout, site, cluster.component, leads, timeout=60.0)


def _wait_cluster(state: LabState, layout: LabLayout, cluster: ClusterPlan, progress: Progress,
                  timeout: float = 90.0) -> None:
    """Wait for a leader, every member streaming, and (synchronous clusters) a synchronous standby."""
    deadline = time.monotonic() + timeout
    announced_leader = False
    label = "" if cluster.legacy else f"{cluster.name}: "
    while time.monotonic() < deadline:
        for name in cluster.sites:
            p = proc_of(state, name, cluster.component)
            site = layout.site(name)
            if p is not None and not procs.alive(p):
                raise LabError(f"{cluster.component} in {name} exited during start; see its log: "
                               f"{site.log(cluster.component)}\n{tail(site.log(cluster.component), 8)}")
        members = cluster_members(layout, cluster=cluster)
        leader = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        if leader and not announced_leader:
            progress(f"postgres: {label}{leader[0]['name']} is primary (initdb done)")
            announced_leader = True
        streaming = [m for m in members if m.get("role") in ("replica", *SYNC_ROLES)
                     and m.get("state") == "streaming"]
        sync = [m for m in members if m.get("role") in SYNC_ROLES]
        if leader and len(streaming) == len(cluster.sites) - 1 and (sync or not cluster.sync):
            progress(f"postgres: {label}{len(streaming)} standbys streaming"
                     + (f", {sync[0]['name']} synchronous" if sync else ""))
            return
        time.sleep(0.3)
    raise LabError(f"PostgreSQL under Patroni ({cluster.name}) did not form a cluster with a synchronous standby "
                   f"within {timeout:.0f} s; see the logs: "
                   + ", ".join(str(layout.site(n).log(cluster.component)) for n in cluster.sites))


def _migrate_claims(layout: LabLayout, secrets: Secrets) -> None:
    """The reference service's database, role and schema."""
    from firebreak.claims.db import ensure_database, migrate

    ensure_database(superuser_dsn(layout, secrets), secrets.app)
    migrate(layout.dsn("claims", secrets.app))


def _migrate_estate(layout: LabLayout, cluster: ClusterPlan, secrets: Secrets) -> None:
    """An estate cluster's database, its services' role and their one table."""
    import psycopg

    from firebreak.claims.db import ensure_database
    from firebreak.estate.service import SCHEMA

    ensure_database(cluster_dsn(layout, cluster, "postgres", secrets.superuser, dbname="postgres"), secrets.app,
                    dbname=cluster.dbname, owner=cluster.app_user)
    with psycopg.connect(cluster_dsn(layout, cluster, cluster.app_user, secrets.app), autocommit=True) as conn:
        conn.execute(SCHEMA)


def down(purge: bool = False, progress: Progress = _quiet, home: Path | None = None) -> bool:
    """Stop everything the lab started; returns False when there was no lab."""
    home = home or lab_home()
    state = load(home)
    if state is None:
        if purge and home.exists():
            shutil.rmtree(home)
        return False
    state.phase = "stopping"
    save(state)
    stop_everything(state, progress)
    clear(home)
    if purge:
        shutil.rmtree(home, ignore_errors=True)
    return True
