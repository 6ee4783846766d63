"""Faults a drill or a person injects into a running lab, and undoing them: power cuts, isolated
sites, one cut link, degraded links, paused processes, lost components, bad values in etcd."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from firebreak.control import keys
from firebreak.errors import InputError, Problem
from firebreak.inputs import suggest
from firebreak.lab import lifecycle, net, procs
from firebreak.lab.components import etcd_ok, ready_probe, site_pids, start, wait_component
from firebreak.lab.layout import SiteLayout
from firebreak.lab.state import LabState, lab_home, load, load_secrets, save
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
    def family() -> list[int]:  # the recorded PIDs checked again each time (start times)
        return procs.site_family(state.lab_id, site_name, site_pids(state, site_name))
    killed = procs.power_cut(family(), rescan=family)
    st = state.sites[site_name]
    st.power, st.silenced, st.procs = "off", how, []
    st.paused = []  # killed with the rest: nothing left to continue
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
    leftovers = procs.site_family(state.lab_id, site_name)
    if leftovers:
        procs.power_cut(leftovers, rescan=lambda: procs.site_family(state.lab_id, site_name))
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


def cut_etcd(site_name: str, home: Path | None = None) -> dict:
    """Cut a site's etcd member off from every other site, its PostgreSQL, Patroni and agent
    still linked to theirs: with two of three cut off etcd has no quorum while every database
    server reaches every other. `unisolate`, `heal` and `recover` undo it."""
    state = require(home)
    site = site_of(state, site_name)
    how = net.cut_etcd(state.layout, site)
    state.sites[site_name].isolated = f"its etcd member only ({how})"
    save(state)
    return {"site": site_name, "etcd_cut": how, "at": time.time()}


def unisolate(site_name: str, home: Path | None = None) -> dict:
    """Undo an isolation only (a flap's up half), leaving cut or degraded links as they are."""
    state = require(home)
    net.heal(state.layout, site_of(state, site_name))
    state.sites[site_name].isolated = ""
    save(state)
    return {"site": site_name, "at": time.time()}


def undegrade(site_name: str, home: Path | None = None) -> dict:
    """Undo a degrade only, leaving an isolation or cut links as they are."""
    state = require(home)
    net.undegrade(state.layout, site_of(state, site_name))
    state.sites[site_name].degraded = ""
    save(state)
    return {"site": site_name, "at": time.time()}


def degrade(site_name: str, loss: int, rate_kbit: int, home: Path | None = None) -> dict:
    state = require(home)
    site = site_of(state, site_name)
    how = net.degrade(state.layout, site, loss, rate_kbit)
    state.sites[site_name].degraded = how
    save(state)
    return {"site": site_name, "degraded": how, "at": time.time()}


def door_limit(per_source: int | None = None, home: Path | None = None, extra_ports: tuple[int, ...] = ()) -> bool:
    """Each door's per-source connection cap set to `per_source` (None: the deployed default), as
    an operator changes `settings.door.connections_per_source`; False where the lab has none.
    `extra_ports`: more ports under the same cap (a benchmark's second door)."""
    return net.door_limit(require(home).layout, per_source, extra_ports)


def rto_min(ms: int, home: Path | None = None) -> bool:
    """Each site's floor on TCP retransmissions toward the other sites, in milliseconds (0: the
    kernel's 200); False where the lab has no namespaces. For benchmarks that compare floors."""
    return net.rto_min(require(home).layout, ms)


def thin_linear(on: bool, home: Path | None = None) -> bool:
    """Linear retransmission timeouts for thin streams in every site (net.thin_linear); False where
    the lab has no namespaces. For benchmarks that compare the two."""
    return net.thin_linear(require(home).layout, on)


def link_of(state: LabState, a: str, b: str) -> tuple[SiteLayout, SiteLayout]:
    """The two ends of a link, checked: both sites exist and they differ."""
    two_ends(a, b)
    return site_of(state, a), site_of(state, b)


def two_ends(a: str, b: str) -> None:
    if a == b:
        raise InputError(Problem("sites", "", f"a link joins two different sites; got '{a}' twice. "
                                              "Name the sites at its two ends"))


def cut(a: str, b: str, home: Path | None = None) -> dict:
    """Cut the link between sites a and b, both ways; each keeps its links to every other site
    and its processes run on. Only a and b see each other gone: no majority agrees on a loss."""
    two_ends(a, b)  # before the lab is even looked at
    state = require(home)
    site_a, site_b = link_of(state, a, b)
    how = net.cut(state.layout, site_a, site_b)
    for here, there in ((a, b), (b, a)):
        if there not in state.sites[here].cut:
            state.sites[here].cut.append(there)
    save(state)
    return {"sites": [a, b], "cut": how, "at": time.time()}


def uncut(a: str, b: str, home: Path | None = None) -> dict:
    state = require(home)
    site_a, site_b = link_of(state, a, b)
    net.uncut(state.layout, site_a, site_b)
    changed = b in state.sites[a].cut or a in state.sites[b].cut
    for here, there in ((a, b), (b, a)):
        state.sites[here].cut = [s for s in state.sites[here].cut if s != there]
    save(state)
    return {"sites": [a, b], "changed": changed}


# What a pause can stop short of the whole site: PostgreSQL alone (its storage hangs).
PAUSE_COMPONENTS = procs.PAUSE_COMPONENTS


def pause(site_name: str, component: str | None = None, home: Path | None = None) -> dict:
    """SIGSTOP every process of a site (a host that hangs: its kernel still answers TCP
    handshakes, nothing above it answers), or with component='postgres' PostgreSQL alone, or
    with component='etcd' the site's etcd member alone. The
    stopped PIDs go into the lab's state so that resume, heal, recover and down continue them."""
    if component is not None and component not in PAUSE_COMPONENTS:  # before the lab is even looked at
        raise InputError(Problem("--component", "", f"unknown component '{component}'{suggest(component, PAUSE_COMPONENTS)}; "
                                                    f"a pause stops {' or '.join(PAUSE_COMPONENTS)} alone, or "
                                                    "without --component every process of the site"))
    state = require(home)
    site_of(state, site_name)
    if state.sites[site_name].power == "off":
        raise InputError(Problem("site", "", f"{site_name} has no power; nothing runs there to pause. "
                                             f"`firebreak lab power on {site_name}` first"))
    t0 = time.time()
    stopped = procs.pause(state.lab_id, site_name, only=component, known=site_pids(state, site_name),
                          roots=[p.pid for p in state.sites[site_name].procs
                                 if p.component == component and procs.alive(p)])
    st = state.sites[site_name]
    have = {p.pid for p in st.paused}
    st.paused += [p for p in stopped if p.pid not in have]
    save(state)
    return {"site": site_name, "component": component or "every process", "paused": len(stopped),
            "pids": [p.pid for p in stopped], "at": t0}


def resume(site_name: str, home: Path | None = None) -> dict:
    """SIGCONT what a pause of the site stopped (only those very processes: PID and start time)."""
    state = require(home)
    site_of(state, site_name)
    st = state.sites[site_name]
    n = procs.resume(st.paused)
    changed = bool(st.paused)
    st.paused = []
    save(state)
    return {"site": site_name, "changed": changed, "resumed": n, "at": time.time()}


def down(purge: bool = False, progress=lambda _m: None, home: Path | None = None) -> bool:
    """`lab down`, after continuing whatever a pause left stopped: a stopped process keeps SIGTERM
    pending and would only die at the SIGKILL after its grace time (and a stopped postmaster would
    make its Patroni wait out its whole grace too)."""
    state = load(home or lab_home())
    if state is not None:
        for st in state.sites.values():
            procs.resume(st.paused)
    return lifecycle.down(purge=purge, progress=progress, home=home)


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
    # Every cut link with this site at one end. All the lab's other sites, not only the recorded
    # ones: a cut whose record was lost (a crash between the rule and the save) still goes.
    for other in state.sites:
        if other != site_name:
            net.uncut(state.layout, site, state.layout.site(other))
            state.sites[other].cut = [s for s in state.sites[other].cut if s != site_name]
    state.sites[site_name].cut = []
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
    if st.paused:
        # First: a stopped process looks alive, so nothing below would restart it.
        done.append(f"{resume(site_name, home)['resumed']} paused processes continued")
    if st.isolated or st.degraded or st.cut:
        # Before power: power_on restores the site's address, not its cut or isolated links.
        heal(site_name, home)
        done.append("links restored")
    if st.power == "off":
        power_on(site_name, home)
        return done + ["power on"]
    wanted = state.plan.components(site_name, state.agents)
    for component in wanted:
        state = require(home)
        if not any(p.component == component and procs.alive(p) for p in state.sites[site_name].procs):
            start_component(site_name, component, home)
            done.append(f"{component} restarted")
    return done


# --- bad values ------------------------------------------------------------------------------

BAD_VALUE_EVERY = 0.3  # seconds between writes: the site's agent rewrites its own view every 0.2 s


def bad_view(site: str, others: list[str], n: int, now: float) -> str:
    """The n-th malformed view written under `site`'s key, in turn: `unreachable_for` a string
    instead of an object, seconds as a string, and no JSON at all. Pure."""
    other = others[n % len(others)] if others else site
    values = (
        json.dumps({"observer": site, "published": now, "unreachable_for": "3.0"}),
        json.dumps({"observer": site, "published": now, "unreachable_for": {other: "3.0"}}),
        "{\"observer\": " + json.dumps(site) + ", \"unreachable_for\": {",
    )
    return values[n % len(values)]


def agent_identity(layout, site_name: str) -> str:
    """The etcd identity of the site's agent: its own `agent-<site>` where the lab has one, else
    the agents' shared `agent`."""
    own = f"agent-{site_name}"
    return own if layout.access_file(own).exists() else "agent"


class BadValues:
    """Writes malformed views under a site's key, /firebreak/views/<site>, with that site's agent's
    etcd identity, every `every` seconds until stopped: what a buggy or newer agent might write.
    The promise it tests: every agent ignores them, counts them, and keeps running."""

    def __init__(self, site_name: str, every: float = BAD_VALUE_EVERY, home: Path | None = None):
        state = require(home)
        site_of(state, site_name)
        self.layout, self.site, self.every = state.layout, site_name, every
        self.others = [n for n in state.sites if n != site_name]
        self.role = agent_identity(self.layout, site_name)
        self.key = keys.DEFAULT.view(site_name)
        self.written, self.failed, self.last_error = 0, 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"bad-values-{site_name}")

    def start(self) -> "BadValues":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._loop())
        except Exception as e:  # noqa: BLE001 - the writer's own failure is a figure of the fault, not a crash
            self.last_error = f"bad-value writer stopped: {e!r}"

    async def _loop(self) -> None:
        from firebreak.control.etcd import EtcdError
        from firebreak.lab import access

        etcd = access.client(self.layout, self.role, timeout=1.0)
        try:
            n = 0
            while not self._stop.is_set():
                try:
                    await etcd.put(self.key, bad_view(self.site, self.others, n, time.time()))
                    self.written += 1
                except EtcdError as e:  # etcd busy or a member down: the next write tries again
                    self.failed += 1
                    self.last_error = str(e)
                n += 1
                await asyncio.sleep(self.every)
        finally:
            await etcd.close()

    def stop(self) -> dict:
        """Stop writing; what was written."""
        self._stop.set()
        self._thread.join(timeout=10)
        return {"site": self.site, "key": self.key, "role": self.role, "written": self.written, "failed": self.failed,
                "last_error": self.last_error}


def bad_values(site_name: str, every: float = BAD_VALUE_EVERY, home: Path | None = None) -> BadValues:
    """Start writing malformed views under the site's key (BadValues); `.stop()` ends it."""
    return BadValues(site_name, every, home).start()
