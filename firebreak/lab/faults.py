"""Faults a drill or a person injects into a running lab, and undoing them: power cuts, cut links,
degraded links, lost components."""

from __future__ import annotations

import time
from pathlib import Path

from firebreak.errors import InputError, Problem
from firebreak.inputs import suggest
from firebreak.lab import net, procs
from firebreak.lab.components import etcd_ok, ready_probe, site_pids, start, wait_component
from firebreak.lab.layout import SiteLayout
from firebreak.lab.state import LabState, load_secrets, save
from firebreak.lab.status import require


def site_of(state: LabState, name: str) -> SiteLayout:
    if name not in state.sites:
        raise InputError(Problem("site", "", f"unknown site '{name}'{suggest(name, state.sites)}; "
                                             f"the lab's sites are {', '.join(state.sites)}"))
    return state.layout.site(name)


def power_off(site_name: str, home: Path | None = None) -> dict:
    """A power cut: the site's address goes silent and every process of the site dies at once."""
    state = require(home)
    site = site_of(state, site_name)
    if state.sites[site_name].power == "off":
        return {"site": site_name, "changed": False, "silenced": state.sites[site_name].silenced}
    t0 = time.time()
    how = net.silence(state.layout, site)
    killed = procs.power_cut(site_pids(state, site_name), rescan=lambda: procs.marked(state.lab_id, site_name))
    st = state.sites[site_name]
    st.power, st.silenced, st.procs = "off", how, []
    save(state)
    return {"site": site_name, "changed": True, "at": t0, "killed": killed, "silenced": how}


def power_on(site_name: str, home: Path | None = None, wait: bool = True) -> dict:
    state = require(home)
    site = site_of(state, site_name)
    if state.sites[site_name].power == "up":
        return {"site": site_name, "changed": False}
    secrets = load_secrets(state.home)
    layout = state.layout
    # A site without power runs nothing: anything of it still alive (it cannot be, after
    # power_off; this is the belt to its braces) would hold ports and shared memory.
    leftovers = procs.marked(state.lab_id, site_name)
    if leftovers:
        procs.power_cut(leftovers, rescan=lambda: procs.marked(state.lab_id, site_name))
    net.restore(layout, site)
    state.sites[site_name].power = "up"
    state.sites[site_name].silenced = "none"
    # Whatever a kill left half-written (postmaster.pid, etcd's wal) is the site's own to recover.
    # etcd first, and healthy, before Patroni: Patroni talks to the first etcd member that
    # answers and stays with it, and it must be this site's own, not one in a site that may die next.
    start(state, layout, site, "etcd", secrets)
    wait_component(state, layout, site, "etcd", lambda: etcd_ok(layout, site))
    plan = state.plan
    for component in plan.components(site_name, state.agents)[1:]:
        start(state, layout, site, component, secrets)
    if wait:
        for component in plan.components(site_name, state.agents):
            if component == "app" or component == "agent" or component.startswith("svc@"):
                wait_component(state, layout, site, component, ready_probe(layout, site, component, plan))
    save(state)
    return {"site": site_name, "changed": True}


def isolate(site_name: str, home: Path | None = None) -> dict:
    """Cut a site's links to the other sites; its processes stay alive."""
    state = require(home)
    site = site_of(state, site_name)
    how = net.isolate(state.layout, site)
    state.sites[site_name].isolated = how
    save(state)
    return {"site": site_name, "isolated": how, "at": time.time()}


def degrade(site_name: str, loss: int, rate_kbit: int, home: Path | None = None) -> dict:
    state = require(home)
    site = site_of(state, site_name)
    how = net.degrade(state.layout, site, loss, rate_kbit)
    state.sites[site_name].degraded = how
    save(state)
    return {"site": site_name, "degraded": how, "at": time.time()}


def stop_component(site_name: str, component: str, home: Path | None = None) -> int:
    """Kill one component of a site at once (e.g. the agent: ops tools lost, data still up)."""
    state = require(home)
    site_of(state, site_name)
    procs_ = [p for p in state.sites[site_name].procs if p.component == component and procs.alive(p)]
    procs.power_cut([p.pid for p in procs_])
    state.sites[site_name].procs = [p for p in state.sites[site_name].procs if p not in procs_]
    save(state)
    return len(procs_)


def start_component(site_name: str, component: str, home: Path | None = None) -> None:
    state = require(home)
    site = site_of(state, site_name)
    if any(p.component == component and procs.alive(p) for p in state.sites[site_name].procs):
        return
    start(state, state.layout, site, component, load_secrets(state.home))
    ready = ready_probe(state.layout, site, component, state.plan)
    if ready is not None and component != "etcd":
        wait_component(state, state.layout, site, component, ready)


def heal(site_name: str, home: Path | None = None) -> dict:
    state = require(home)
    site = site_of(state, site_name)
    net.heal(state.layout, site)
    net.undegrade(state.layout, site)
    state.sites[site_name].isolated = ""
    state.sites[site_name].degraded = ""
    save(state)
    return {"site": site_name, "healed": True}


def recover(site_name: str, home: Path | None = None) -> list[str]:
    """Undo whatever fault a site is left with (a drill that was killed, a `power off` forgotten):
    power back on, links restored, dead components restarted, etcd first. Returns what it did."""
    state = require(home)
    site_of(state, site_name)  # a clear error for an unknown site
    st = state.sites[site_name]
    done: list[str] = []
    if st.power == "off":
        power_on(site_name, home)
        return ["power on"]
    if st.isolated or st.degraded:
        heal(site_name, home)
        done.append("links restored")
    wanted = state.plan.components(site_name, state.agents)
    for component in wanted:
        state = require(home)
        if not any(p.component == component and procs.alive(p) for p in state.sites[site_name].procs):
            start_component(site_name, component, home)
            done.append(f"{component} restarted")
    return done
