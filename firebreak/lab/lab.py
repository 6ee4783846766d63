"""`firebreak lab`: bring three (or more) real sites up on one machine, cut their power, bring
them back, and take everything down again, leaving nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import secrets as pysecrets
import shutil
import time
from pathlib import Path
from typing import Callable

import httpx
import yaml

from firebreak.errors import InputError, LabError, Problem
from firebreak.inputs import suggest
from firebreak.lab import access, net, procs, runtime
from firebreak.lab.config import (Secrets, agent_config, app_env, db_door_config_of, door_config_of, etcd_argv,
                                  patroni_config, superuser_dsn)
from firebreak.lab.layout import PORTS, LabLayout, SiteLayout, make_layout
from firebreak.lab.state import (LabState, SiteState, clear, lab_home, load, load_secrets, save, save_secrets,
                                 write_private)
from firebreak.resources import example
from firebreak.topology import load_topology

Progress = Callable[[str], None]
DEFAULT_TOPOLOGY = example("firebreak-lab.yaml")
UP_TIMEOUT = 120.0


class AlreadyUp(LabError):
    exit_code = 0


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# up


def up(topology: Path | None = None, net_mode: str = "auto", agents: bool = True,
       progress: Progress = _quiet, home: Path | None = None) -> LabState:
    home = home or lab_home()
    existing = load(home)
    if existing is not None:
        if any(procs.alive(p) for s in existing.sites.values() for p in s.procs) or existing.phase == "up":
            raise AlreadyUp(f"the lab is already up ({len(existing.sites)} sites, {existing.net} mode, "
                            f"home {home}); nothing changed. `firebreak lab down` first to start afresh")
        _stop_everything(existing, progress)  # leftovers of a crashed run

    topo_path = topology or DEFAULT_TOPOLOGY
    topo = load_topology(topo_path, str(topology) if topology else "examples/firebreak-lab.yaml")
    if len(topo.sites) < 3:
        raise LabError(f"{topo_path}: the lab needs at least 3 sites for etcd and Patroni to survive the loss "
                       f"of one; it has {len(topo.sites)}")
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
                     user=user, agents=agents, sites={s: SiteState() for s in topo.sites}, python=python)
    save(state)
    try:
        access.prepare(layout)
        _prepare_dirs(layout, secrets, user, python)
        progress(f"network: {mode}" + (" (one namespace per site)" if mode == "netns" else " (127.0.N.1 per site)"))
        net.setup(layout)
        for site in layout.sites:
            _start(state, layout, site, "etcd", secrets)
        for site in layout.sites:
            _wait_component(state, layout, site, "etcd", lambda s=site: _etcd_ok(layout, s))
        progress(f"etcd: {len(layout.sites)} members, quorum formed")
        asyncio.run(access.lock(layout))
        progress(f"etcd: locked (TLS, client certificates, one user per role: {', '.join(access.ROLES)})")
        secrets = _create_operator(layout, secrets)
        # The topology's primary site bootstraps the cluster, so the lab starts where the model
        # says it does; the others clone from it.
        first = layout.site(_primary_site(topo))
        _start(state, layout, first, "patroni", secrets)
        _wait_leader(state, layout, first)
        for site in layout.sites:
            if site is not first:
                _start(state, layout, site, "patroni", secrets)
        _wait_cluster(state, layout, progress)
        progress("postgres: schema migrated")
        for site in layout.sites:
            _start(state, layout, site, "dbdoor", secrets)
        for site in layout.sites:
            _wait_component(state, layout, site, "dbdoor", lambda s=site: _tcp_ok(s.address, PORTS["db_door"]))
        progress(f"database doors (HAProxy): read-write on port {PORTS['db_door']}, read-only on "
                 f"{PORTS['db_door_ro']} in every site")
        for site in layout.sites:
            _start(state, layout, site, "app", secrets)
        for site in layout.sites:
            _wait_component(state, layout, site, "app", lambda s=site: _http_ok(s.url("app") + "/readyz"))
        progress("reference service: ready in every site")
        for site in layout.sites:
            _start(state, layout, site, "door", secrets)
        for site in layout.sites:
            _wait_component(state, layout, site, "door", lambda s=site: _http_ok(s.url("door") + "/healthz"))
        progress(f"front doors (Caddy): serving on port {PORTS['door']} in every site")
        if agents:
            for site in layout.sites:
                _start(state, layout, site, "agent", secrets)
            for site in layout.sites:
                _wait_component(state, layout, site, "agent", lambda s=site: _http_ok(s.url("console") + "/healthz"))
            progress("site agents: running in every site")
            if settled(home):
                progress("site agents: etcd's leader placed outside the primary's site")
        state.phase = "up"
        save(state)
        return state
    except BaseException as e:
        progress("start failed; stopping everything this run started")
        _stop_everything(state, _quiet)
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
    from firebreak.control.keys import Keys
    from firebreak.control.etcd import Etcd

    async def go() -> str:
        etcd = Etcd(layout.etcd_endpoints, timeout=3, access=access.load(layout, "ops"))
        try:
            return await add_operator(etcd, Keys(), "lab", "admin")
        finally:
            await etcd.close()
    secrets = replace(secrets, ops_token=asyncio.run(go()))
    save_secrets(layout.home, secrets)
    return secrets


def _prepare_dirs(layout: LabLayout, secrets: Secrets, user: tuple[int, int] | None, python: str) -> None:
    for site in layout.sites:
        for sub in ("log/postgres", "run", "etcd"):
            (site.dir / sub).mkdir(parents=True, exist_ok=True)
        cfg = site.dir / "patroni.yml"
        write_private(cfg, yaml.safe_dump(patroni_config(layout, site, secrets, runtime.pg_bin_dir(python),
                                                         access.load(layout, "patroni")), sort_keys=False))
        write_private(site.dir / "agent.yml", yaml.safe_dump(agent_config(layout, site, secrets), sort_keys=False))
        (site.dir / "door.json").write_text(json.dumps(door_config_of(layout, site), indent=2))
        (site.dir / "db-door.cfg").write_text(db_door_config_of(layout, site))
        os.chmod(site.dir / "run", 0o700)
        os.chmod(site.dir / "etcd", 0o700)
        runtime.chown_tree(site.dir, user)
    # Every role's credentials belong to the lab's user, which runs etcd, Patroni, agents and apps.
    runtime.chown_tree(layout.home / "access", user)
    runtime.chown_tree(layout.home / "pki", user)


def _argv(layout: LabLayout, site: SiteLayout, component: str, secrets: Secrets, python: str) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATRONI_", "FIREBREAK_"))}
    env["HOME"] = str(site.dir)
    if component == "etcd":
        return etcd_argv(runtime.etcd_binary(python), layout, site, secrets.cluster_token), env
    if component == "patroni":
        return [runtime.venv_bin("patroni", python), str(site.dir / "patroni.yml")], env
    if component == "app":
        env.update(app_env(layout, site, secrets))
        return [python, "-m", "firebreak.claims.serve", "--bind", f"{site.address}:{PORTS['app']}"], env
    if component == "agent":
        return [runtime.venv_bin("firebreak", python), "agent", "--config", str(site.dir / "agent.yml")], env
    if component == "door":
        # Caddy keeps its state and autosaved config under XDG dirs: the site's own, not a home's.
        env.update(XDG_DATA_HOME=str(site.dir / "door"), XDG_CONFIG_HOME=str(site.dir / "door"),
                   GOMAXPROCS="1", GOGC="400")
        return [runtime.venv_bin("caddy", python), "run", "--config", str(site.dir / "door.json")], env
    if component == "dbdoor":
        return [runtime.haproxy_binary(), "-db", "-f", str(site.dir / "db-door.cfg")], env
    raise ValueError(component)


def _start(state: LabState, layout: LabLayout, site: SiteLayout, component: str, secrets: Secrets) -> None:
    if component == "door" and site.door_admin.startswith("unix/"):
        # A power cut leaves the admin socket behind; Caddy would refuse to listen on it.
        Path(site.door_admin.removeprefix("unix/")).unlink(missing_ok=True)
    if component == "dbdoor":
        Path(site.db_door_admin.removeprefix("unix/")).unlink(missing_ok=True)
    argv, env = _argv(layout, site, component, secrets, state.python)
    proc = procs.spawn(argv, site=site.name, component=component, lab_id=state.lab_id, log=site.log(component),
                       env=env, cwd=site.dir, netns=site.netns, user=state.user)
    state.sites[site.name].procs.append(proc)
    save(state)


def _proc(state: LabState, site: str, component: str) -> procs.Proc | None:
    found = [p for p in state.sites[site].procs if p.component == component]
    return found[-1] if found else None


def _wait_component(state: LabState, layout: LabLayout, site: SiteLayout, component: str,
                    ready: Callable[[], bool], timeout: float = 40.0) -> None:
    proc = _proc(state, site.name, component)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not procs.alive(proc):
            raise LabError(f"{component} in {site.name} exited during start; see its log: {site.log(component)}"
                           f"\n{_tail(site.log(component), 8)}")
        if ready():
            return
        time.sleep(0.2)
    raise LabError(f"{component} in {site.name} did not become ready within {timeout:.0f} s; "
                   f"see its log: {site.log(component)}\n{_tail(site.log(component), 8)}")


def _primary_site(topo) -> str:
    from firebreak.topology import Kind
    for svc in topo.services.values():
        if svc.kind == Kind.DATABASE and svc.primary:
            return svc.primary
    return topo.sites[0]


def _wait_leader(state: LabState, layout: LabLayout, site: SiteLayout) -> None:
    def leads() -> bool:
        try:
            return httpx.get(site.url("patroni") + "/primary", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    _wait_component(state, layout, site, "patroni", leads, timeout=40.0)


def _wait_cluster(state: LabState, layout: LabLayout, progress: Progress, timeout: float = 60.0) -> None:
    """Wait for a leader, every member streaming, and a synchronous standby; then migrate."""
    deadline = time.monotonic() + timeout
    announced_leader = False
    secrets = load_secrets(layout.home)
    while time.monotonic() < deadline:
        for site in layout.sites:
            p = _proc(state, site.name, "patroni")
            if p is not None and not procs.alive(p):
                raise LabError(f"patroni in {site.name} exited during start; see its log: {site.log('patroni')}"
                               f"\n{_tail(site.log('patroni'), 8)}")
        members = cluster_members(layout)
        leader = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        if leader and not announced_leader:
            progress(f"postgres: {leader[0]['name']} is primary (initdb done)")
            announced_leader = True
        streaming = [m for m in members if m.get("role") in ("replica", "sync_standby")
                     and m.get("state") == "streaming"]
        sync = [m for m in members if m.get("role") == "sync_standby"]
        if leader and len(streaming) == len(layout.sites) - 1 and sync:
            progress(f"postgres: {len(streaming)} standbys streaming, {sync[0]['name']} synchronous")
            from firebreak.claims.db import ensure_database, migrate
            ensure_database(superuser_dsn(layout, secrets), secrets.app)
            migrate(layout.dsn("claims", secrets.app))
            return
        time.sleep(0.3)
    raise LabError("PostgreSQL under Patroni did not form a cluster with a synchronous standby within "
                   f"{timeout:.0f} s; see the logs: " + ", ".join(str(s.log('patroni')) for s in layout.sites))


def _tcp_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    import socket
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _etcd_ok(layout: LabLayout, site: SiteLayout, timeout: float = 1.0) -> bool:
    """A member answers its health check (over TLS, with a client certificate: etcd asks for one)."""
    a = access.load(layout, access.ROOT)
    try:
        with httpx.Client(verify=a.ssl_context(), timeout=timeout) as c:
            return c.get(site.url("etcd") + "/health").status_code == 200
    except httpx.HTTPError:
        return False


def etcd_client(role: str = access.ROOT, home: Path | None = None, **kw):
    """An etcd client for the running lab, acting as `role` (drills, benchmarks, `firebreak ops`)."""
    return access.client(_require(home).layout, role, **kw)


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
        primary = next((m["name"] for m in cluster_members(_require(home).layout) if m.get("role") == "leader"), None)
        leader = etcd_leader_site(home)
        if primary is not None and leader is not None and leader != primary:
            return True
        time.sleep(0.3)
    return False


def etcdctl_flags(role: str = access.ROOT, home: Path | None = None) -> list[str]:
    """etcdctl's TLS and user flags for the running lab's etcd, acting as `role`."""
    return access.etcdctl_flags(_require(home).layout, role)


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


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


def _tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except FileNotFoundError:
        return "  (no log written)"
    return "\n".join("  | " + line for line in lines)


# ---------------------------------------------------------------------------------------------
# down


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
    _stop_everything(state, progress)
    clear(home)
    if purge:
        shutil.rmtree(home, ignore_errors=True)
    return True


def _site_pids(state: LabState, site: str) -> list[int]:
    recorded = [p.pid for p in state.sites[site].procs if procs.alive(p)]
    return sorted(set(recorded) | set(procs.marked(state.lab_id, site)))


def _stop_everything(state: LabState, progress: Progress) -> None:
    layout = state.layout
    # Apps first (no new writes), then Patroni (it stops its PostgreSQL cleanly), then etcd.
    # etcd gets little time: on SIGTERM a leader tries to hand leadership to peers that are
    # already gone and waits seconds for them; its log is fsynced, a kill loses nothing.
    for component, grace in (("door", 3.0), ("dbdoor", 3.0), ("app", 5.0), ("agent", 5.0), ("patroni", 15.0), ("etcd", 1.0)):
        pids = [p.pid for s in state.sites.values() for p in s.procs if p.component == component and procs.alive(p)]
        if pids:
            procs.terminate(pids, timeout=grace)
    leftovers = procs.marked(state.lab_id)
    if leftovers:
        procs.terminate(leftovers, timeout=5.0, still=lambda: procs.marked(state.lab_id))
    net.teardown(layout)
    for s in state.sites.values():
        s.procs = []
    progress("every lab process stopped, network removed")


# ---------------------------------------------------------------------------------------------
# power


def _require(home: Path | None) -> LabState:
    state = load(home or lab_home())
    if state is None:
        raise LabError("no lab is running here; start one with `firebreak lab up`")
    return state


def _site_of(state: LabState, name: str) -> SiteLayout:
    if name not in state.sites:
        raise InputError(Problem("site", "", f"unknown site '{name}'{suggest(name, state.sites)}; "
                                             f"the lab's sites are {', '.join(state.sites)}"))
    return state.layout.site(name)


def power_off(site_name: str, home: Path | None = None) -> dict:
    """A power cut: the site's address goes silent and every process of the site dies at once."""
    state = _require(home)
    site = _site_of(state, site_name)
    if state.sites[site_name].power == "off":
        return {"site": site_name, "changed": False, "silenced": state.sites[site_name].silenced}
    t0 = time.time()
    how = net.silence(state.layout, site)
    killed = procs.power_cut(_site_pids(state, site_name))
    st = state.sites[site_name]
    st.power, st.silenced, st.procs = "off", how, []
    save(state)
    return {"site": site_name, "changed": True, "at": t0, "killed": killed, "silenced": how}


def power_on(site_name: str, home: Path | None = None, wait: bool = True) -> dict:
    state = _require(home)
    site = _site_of(state, site_name)
    if state.sites[site_name].power == "up":
        return {"site": site_name, "changed": False}
    secrets = load_secrets(state.home)
    layout = state.layout
    net.restore(layout, site)
    state.sites[site_name].power = "up"
    state.sites[site_name].silenced = "none"
    # Whatever a kill left half-written (postmaster.pid, etcd's wal) is the site's own to recover.
    # etcd first, and healthy, before Patroni: Patroni talks to the first etcd member that
    # answers and stays with it, and it must be this site's own, not one in a site that may die next.
    _start(state, layout, site, "etcd", secrets)
    _wait_component(state, layout, site, "etcd", lambda: _etcd_ok(layout, site))
    for component in ("patroni", "dbdoor", "app", "door") + (("agent",) if state.agents else ()):
        _start(state, layout, site, component, secrets)
    if wait:
        _wait_component(state, layout, site, "app", lambda: _http_ok(site.url("app") + "/healthz"))
        if state.agents:
            _wait_component(state, layout, site, "agent", lambda: _http_ok(site.url("console") + "/healthz"))
    save(state)
    return {"site": site_name, "changed": True}


def isolate(site_name: str, home: Path | None = None) -> dict:
    """Cut a site's links to the other sites; its processes stay alive."""
    state = _require(home)
    site = _site_of(state, site_name)
    how = net.isolate(state.layout, site)
    state.sites[site_name].isolated = how
    save(state)
    return {"site": site_name, "isolated": how, "at": time.time()}


def degrade(site_name: str, loss: int, rate_kbit: int, home: Path | None = None) -> dict:
    state = _require(home)
    site = _site_of(state, site_name)
    how = net.degrade(state.layout, site, loss, rate_kbit)
    state.sites[site_name].degraded = how
    save(state)
    return {"site": site_name, "degraded": how, "at": time.time()}


def stop_component(site_name: str, component: str, home: Path | None = None) -> int:
    """Kill one component of a site at once (e.g. the agent: ops tools lost, data still up)."""
    state = _require(home)
    _site_of(state, site_name)
    procs_ = [p for p in state.sites[site_name].procs if p.component == component and procs.alive(p)]
    procs.power_cut([p.pid for p in procs_])
    state.sites[site_name].procs = [p for p in state.sites[site_name].procs if p not in procs_]
    save(state)
    return len(procs_)


def start_component(site_name: str, component: str, home: Path | None = None) -> None:
    state = _require(home)
    site = _site_of(state, site_name)
    if any(p.component == component and procs.alive(p) for p in state.sites[site_name].procs):
        return
    _start(state, state.layout, site, component, load_secrets(state.home))
    url = {"agent": site.url("console") + "/healthz", "app": site.url("app") + "/healthz",
           "door": site.url("door") + "/healthz"}.get(component)
    if url:
        _wait_component(state, state.layout, site, component, lambda: _http_ok(url))
    elif component == "dbdoor":
        _wait_component(state, state.layout, site, component, lambda: _tcp_ok(site.address, PORTS["db_door"]))


def heal(site_name: str, home: Path | None = None) -> dict:
    state = _require(home)
    site = _site_of(state, site_name)
    net.heal(state.layout, site)
    net.undegrade(state.layout, site)
    state.sites[site_name].isolated = ""
    state.sites[site_name].degraded = ""
    save(state)
    return {"site": site_name, "healed": True}


def recover(site_name: str, home: Path | None = None) -> list[str]:
    """Undo whatever fault a site is left with (a drill that was killed, a `power off` forgotten):
    power back on, links restored, dead components restarted, etcd first. Returns what it did."""
    state = _require(home)
    _site_of(state, site_name)  # a clear error for an unknown site
    st = state.sites[site_name]
    done: list[str] = []
    if st.power == "off":
        power_on(site_name, home)
        return ["power on"]
    if st.isolated or st.degraded:
        heal(site_name, home)
        done.append("links restored")
    wanted = ("etcd", "patroni", "dbdoor", "app", "door") + (("agent",) if state.agents else ())
    for component in wanted:
        state = _require(home)
        if not any(p.component == component and procs.alive(p) for p in state.sites[site_name].procs):
            start_component(site_name, component, home)
            done.append(f"{component} restarted")
    return done


# ---------------------------------------------------------------------------------------------
# status and logs


def status(home: Path | None = None) -> dict:
    state = _require(home)
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
            # The database door: clients need only this host and port (and a reconnect loop).
            "db_door": {"host": site.address, "port": PORTS["db_door"], "read_only_port": PORTS["db_door_ro"]},
            "console": site.url("console") if state.agents else None,
            "processes": {p.component: {"pid": p.pid, "alive": procs.alive(p)} for p in st.procs},
            "silenced": st.silenced if st.power == "off" else None,
            "isolated": st.isolated or None,
        }
    primary = next((n for n, s in sites.items() if s["postgres"]["role"] == "primary"), None)
    healthy = (primary is not None and all(s["state"] == "up" for s in sites.values())
               and any(s["postgres"]["role"] == "sync_standby" for s in sites.values())
               and all(s["postgres"]["state"] == "streaming" for s in sites.values()
                       if s["postgres"]["role"] != "primary"))
    return {
        "lab_id": state.lab_id,
        "net": state.net,
        "phase": state.phase,
        "home": str(state.home),
        "topology": state.topology,
        "primary": primary,
        "healthy": healthy,  # every site up, a primary, every other member streaming, one synchronous
        "sites": sites,
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
