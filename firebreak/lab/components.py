"""Each site's components as processes: how each is started, waited for and stopped (only ours,
by PID), and the probes that say a component is up."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

Progress = Callable[[str], None]

import httpx

from firebreak.errors import LabError
from firebreak.lab import access, net, procs, runtime
from firebreak.deploy.components import CRASH_REPORTING
from firebreak.lab.config import Secrets, app_env, etcd_argv
from firebreak.lab.layout import PORTS, LabLayout, SiteLayout
from firebreak.lab.state import LabState, save


def argv_of(layout: LabLayout, site: SiteLayout, component: str, secrets: Secrets, python: str,
            plan=None) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATRONI_", "FIREBREAK_"))}
    env["HOME"] = str(site.dir)
    if component in ("app", "agent") or component.startswith("svc@"):
        env.update(CRASH_REPORTING)
    if component == "etcd":
        return etcd_argv(runtime.etcd_binary(python), layout, site, secrets.cluster_token), env
    if component == "patroni":
        return [runtime.venv_bin("patroni", python), str(site.dir / "patroni.yml")], env
    kind, _, name = component.partition("@")
    if kind == "patroni":  # one cluster of an estate lab (lab/plan.py)
        return [runtime.venv_bin("patroni", python), str(site.dir / "db" / name / "patroni.yml")], env
    if kind == "svc":      # a reference estate service (firebreak/estate/service.py)
        from firebreak.lab.config import service_env
        env.update(service_env(layout, site, secrets, plan, name))
        return [python, "-m", "firebreak.estate.service", "--bind",
                f"{site.address}:{plan.service(name).port}"], env
    if component == "app":
        env.update(app_env(layout, site, secrets))
        return [python, "-m", "firebreak.claims.serve", "--bind", f"{site.address}:{PORTS['app']}"], env
    if component == "agent":
        return [runtime.venv_bin("firebreak", python), "agent", "--config", str(site.dir / "agent.yml")], env
    if component == "door" and plan is not None and plan.door == "haproxy":
        return [runtime.haproxy_binary(), "-db", "-f", str(site.dir / "door.cfg")], env
    if component == "door":
        # Caddy keeps its state and autosaved config under XDG dirs: the site's own, not a home's.
        env.update(XDG_DATA_HOME=str(site.dir / "door"), XDG_CONFIG_HOME=str(site.dir / "door"),
                   GOMAXPROCS="1", GOGC="400")
        return [runtime.venv_bin("caddy", python), "run", "--config", str(site.dir / "door.json")], env
    if component == "dbdoor":
        return [runtime.haproxy_binary(), "-db", "-f", str(site.dir / "db-door.cfg")], env
    raise ValueError(component)


def start(state: LabState, layout: LabLayout, site: SiteLayout, component: str, secrets: Secrets) -> None:
    if component == "door" and site.door_admin.startswith("unix/"):
        # A power cut leaves the admin socket behind; Caddy would refuse to listen on it.
        Path(site.door_admin.removeprefix("unix/")).unlink(missing_ok=True)
    if component == "dbdoor":
        if not state.plan.door_clusters:
            raise LabError(f"{site.name} runs no database door: no database of this lab's topology declares "
                           "`doors: true` (`firebreak lab status` lists what each site runs)")
        Path(site.db_door_admin.removeprefix("unix/")).unlink(missing_ok=True)
    argv, env = argv_of(layout, site, component, secrets, state.python, state.plan)
    proc = procs.spawn(argv, site=site.name, component=component, lab_id=state.lab_id, log=site.log(component),
                       env=env, cwd=site.dir, netns=site.netns, user=state.user)
    state.sites[site.name].procs.append(proc)
    save(state)


def proc_of(state: LabState, site: str, component: str) -> procs.Proc | None:
    found = [p for p in state.sites[site].procs if p.component == component]
    return found[-1] if found else None


def wait_component(state: LabState, layout: LabLayout, site: SiteLayout, component: str,
                    ready: Callable[[], bool], timeout: float = 40.0) -> None:
    proc = proc_of(state, site.name, component)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not procs.alive(proc):
            raise LabError(f"{component} in {site.name} exited during start; see its log: {site.log(component)}"
                           f"\n{tail(site.log(component), 8)}")
        if ready():
            return
        time.sleep(0.2)
    raise LabError(f"{component} in {site.name} did not become ready within {timeout:.0f} s; "
                   f"see its log: {site.log(component)}\n{tail(site.log(component), 8)}")


def ready_probe(layout: LabLayout, site: SiteLayout, component: str, plan=None) -> Callable[[], bool] | None:
    """What says a started component is ready (None: nothing to wait for)."""
    kind, _, name = component.partition("@")
    if component == "etcd":
        return lambda: etcd_ok(layout, site)
    if component == "app":
        return lambda: http_ok(site.url("app") + "/healthz")
    if component == "door":
        return lambda: http_ok(site.url("door") + "/healthz")
    if component == "agent":
        return lambda: http_ok(site.url("console") + "/healthz")
    if component == "dbdoor":
        port = door_port(plan)
        return lambda: tcp_ok(site.address, port)
    if kind == "svc" and plan is not None:
        url = plan.service(name).url(site)
        return lambda: http_ok(url + "/healthz")
    return None


def door_port(plan=None) -> int:
    """The read-write port of the first cluster a site's database door serves: the one that says
    the door listens (the default lab's, or an estate's first cluster that declares doors)."""
    doors = plan.door_clusters if plan is not None else ()
    return doors[0].port("db_door") if doors else PORTS["db_door"]


def tcp_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    import socket
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def etcd_ok(layout: LabLayout, site: SiteLayout, timeout: float = 1.0) -> bool:
    """A member answers its health check (over TLS, with a client certificate: etcd asks for one)."""
    a = access.load(layout, access.ROOT)
    try:
        with httpx.Client(verify=a.ssl_context(), timeout=timeout) as c:
            return c.get(site.url("etcd") + "/health").status_code == 200
    except httpx.HTTPError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except FileNotFoundError:
        return "  (no log written)"
    return "\n".join("  | " + line for line in lines)


def site_pids(state: LabState, site: str) -> list[int]:
    recorded = [p.pid for p in state.sites[site].procs if procs.alive(p)]
    return sorted(set(recorded) | set(procs.marked(state.lab_id, site)))


def stop_everything(state: LabState, progress: Progress) -> None:
    layout = state.layout
    # Apps first (no new writes), then Patroni (it stops its PostgreSQL cleanly), then etcd.
    # etcd gets little time: on SIGTERM a leader tries to hand leadership to peers that are
    # already gone and waits seconds for them; its log is fsynced, a kill loses nothing.
    for component, grace in (("door", 3.0), ("dbdoor", 3.0), ("app", 5.0), ("svc", 5.0), ("agent", 5.0),
                             ("patroni", 15.0), ("etcd", 1.0)):
        pids = [p.pid for s in state.sites.values() for p in s.procs
                if p.component.partition("@")[0] == component and procs.alive(p)]
        if pids:
            procs.terminate(pids, timeout=grace)
    leftovers = procs.marked(state.lab_id)
    if leftovers:
        procs.terminate(leftovers, timeout=5.0, still=lambda: procs.marked(state.lab_id))
    spared = net.teardown(layout)
    for s in state.sites.values():
        s.procs = []
    progress("every lab process stopped, network removed")
    if spared:
        progress(f"left alone, not made by this lab: {', '.join(spared)} (another lab's, or left behind: "
                 "`firebreak lab down` in its directory, or `ip netns del` / `ip link del` them)")
