"""The drill harness: what every drill runner shares, whatever the lab.

Driving a scenario's steps while the runner's clients work (`drive`): faults injected and each
healed by undoing only itself, flaps toggled on their schedule, pauses continued when their time
is up, and whatever is left healed on the way out (Ctrl-C, SIGTERM, an error); waiting for the
lab's health; the checks after a heal (every agent alive, the replicas agreeing); and the part of
the report every drill has (`finish_report`). The runners (cluster_run.py for the default lab,
estate_run.py for a lab built from a topology) bring the workload and the judging; neither
imports the other, and runner.py chooses between them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx

from firebreak import __version__
from firebreak.drill import consistency
from firebreak.drill.scenario import ROLE_TARGETS, FaultStep, HealStep, Scenario, WaitStep
from firebreak.errors import DrillAborted, EtcdError, LabError
from firebreak.lab import lab
from firebreak.lab.runtime import etcd_binary

Progress = Callable[[str], None]


@dataclass
class Event:
    at: float        # monotonic
    wall: float
    kind: str        # fault | heal | flap (one of a flap's toggles) | check (after a heal)
    site: str
    detail: str
    problems: list[str] = field(default_factory=list)  # a check's findings: each fails the drill


@dataclass
class Active:
    fault: str
    site: str
    since: float
    rto: float | None = None
    silenced: str = ""  # power cuts: how the site's address went quiet (link-down, nftables-drop, none)
    peer: str = ""      # partitions: the site at the cut link's other end (`site` is the one judged)
    healed: float | None = None  # monotonic, once healed
    writer: object | None = None  # bad values: the lab's BadValues writer, stopped by the heal


def wait_healthy(timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        st = lab.status()
        if st["healthy"]:
            return st
        last = {n: (s["postgres"]["role"], s["postgres"]["state"]) for n, s in st["sites"].items()}
        time.sleep(0.5)
    raise LabError(f"the lab is not healthy (PostgreSQL roles and states {last}); a drill starts from a healthy lab. "
                   "Check `firebreak lab status`")


def set_frozen(st: dict, frozen: bool, token: str) -> None:
    for name, s in st["sites"].items():
        if s.get("console") and s["state"] == "up":
            try:
                httpx.post(s["console"] + "/api/actions/" + ("freeze" if frozen else "unfreeze"), json={},
                           headers={"Authorization": f"Bearer {token}"}, timeout=5).raise_for_status()
                return
            except httpx.HTTPError:
                continue
    raise LabError("no site console accepted the freeze; are the agents running (`firebreak lab status`)?")


def heal_on_sigterm() -> None:
    """A drill stopped by a supervisor (`kill`, a CI timeout) heals its faults like one stopped by
    Ctrl-C: SIGTERM becomes KeyboardInterrupt, which drive() answers by healing. For the main
    thread of anything that runs drills: the CLI and every benchmark."""
    def _raise(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _raise)
    # A process started in the background by a shell without job control (`cmd &` in a script,
    # `nohup`, some CI runners) inherits SIGINT ignored, and Python then keeps it ignored: a
    # `kill -INT` (or the Ctrl-C a supervisor forwards) did nothing to a 60-minute chaos drill.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def drive(scenario: Scenario, threads: list[threading.Thread], stop: threading.Event,
          rto_of: Callable[[float], float | None], resolve: Callable[[str], str | None], faults: list[Active],
          events: list[Event], progress: Progress, unfreeze: str | None = None) -> float:
    """Run the scenario's steps while the (started) clients work, then stop them; returns when
    the history ends. With `unfreeze` (an operator token), the agents frozen for a Patroni-alone
    drill are unfrozen whatever happened."""
    try:
        run_steps(scenario, rto_of, faults, events, progress, resolve)
    except BaseException as e:
        # Ctrl-C, a failed step, a bug: whatever stops the drill, the faults it injected are
        # undone before it exits (Chaos Toolkit's rollbacks, AWS FIS's stop conditions).
        stop.set()
        healed, failed = _heal_leftovers(faults, events, progress)
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped by an error ({e})"
        note = (f"healed {', '.join(healed)}" if healed else "no fault was left to heal")
        if failed:
            note += "; could not heal " + "; ".join(failed) + ": run `firebreak lab heal all`"
        raise DrillAborted(f"drill {why}; {note}", interrupted=isinstance(e, KeyboardInterrupt)) from e
    finally:
        # The history ends when the clients are told to stop, not when the last of them has
        # finished a request in flight: waiting for them is no gap in the writes.
        end = time.monotonic()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if unfreeze is not None:
            try:
                set_frozen(lab.status(), False, unfreeze)
            except LabError:
                progress("could not unfreeze the agents: run `firebreak ops unfreeze`")
    return end


def run_steps(scenario: Scenario, rto_of: Callable[[float], float | None], faults: list[Active],
               events: list[Event], progress: Progress, resolve: Callable[[str], str | None]) -> None:
    """The scenario's steps, then healing whatever it left, then waiting for writes to flow.
    `rto_of(at)`: the write unavailability after a fault at `at`, None while writes have not
    resumed; `resolve(role)`: the site a step aimed at a role ("primary", "sync-standby") faults."""
    for step in scenario.steps:
        if isinstance(step, WaitStep):
            progress(f"wait {step.wait:g} s")
            time.sleep(step.wait)
        elif isinstance(step, HealStep):
            # `heal: B` also heals a partition cut from A's side: B is at one end of its link.
            targets = [f.site for f in faults if f.healed is None and step.heal in ("all", f.site, f.peer)]
            for site in dict.fromkeys(targets):
                _heal(site, faults, events, progress)
            if step.settle:
                _settle(step.settle, events, progress)
        else:
            site = _resolve(step.site, resolve)
            peer = _resolve(step.peer, resolve) if step.peer is not None else ""
            if peer == site:
                raise LabError(f"a partition needs two different sites: {step.site} and {step.peer} are both "
                               f"{site} right now")
            _inject(step, site, faults, events, progress, peer=peer)
            fault = faults[-1]
            at = fault.since
            if step.fault == "flap":
                _flap(step, fault, events, progress)
            elif step.fault == "pause":
                # A pause lasts its duration even when writes resumed sooner (a failover): the
                # paused processes are continued then, and the old primary must rejoin by itself.
                time.sleep(max(0.0, at + step.hold - time.monotonic()))
                _end(fault, events, progress)
                deadline = time.monotonic() + 30
                while rto_of(at) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
            elif step.hold:  # bad values always last theirs
                time.sleep(step.hold)
            else:
                deadline = time.monotonic() + 60
                while rto_of(at) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(2.0)
            rto = rto_of(at)
            faults[-1].rto = rto
            progress(f"writes {'resumed %.2f s after the fault' % rto if rto is not None else 'did not resume'}")
    for site in _unhealed(faults, events):
        _heal(site, faults, events, progress)
    progress("waiting for every site to rejoin and writes to flow")
    try:
        wait_healthy(120)
    except LabError as e:
        progress(str(e))
    # A drill ends once writes flow again after its last fault, so a slow recovery is
    # measured rather than cut off (Patroni alone after an isolation: about half a minute).
    if faults:
        last = faults[-1].since
        deadline = time.monotonic() + 90
        while rto_of(last) is None and time.monotonic() < deadline:
            time.sleep(0.2)
    time.sleep(1.0)


def _resolve(target: str, resolve: Callable[[str], str | None]) -> str:
    site = resolve(target) if target in ROLE_TARGETS else target
    if site is None:
        raise LabError(f"no {target} to fault: the lab has none right now")
    return site


def _unhealed(faults: list[Active], events: list[Event]) -> list[str]:
    return list(dict.fromkeys(f.site for f in faults if f.healed is None))


def _heal_leftovers(faults: list[Active], events: list[Event], progress: Progress) -> tuple[list[str], list[str]]:
    """Heal every site a fault is still on; one that cannot be healed does not stop the others."""
    healed, failed = [], []
    for site in _unhealed(faults, events):
        try:
            _heal(site, faults, events, progress)
            healed.append(site)
        except Exception as e:  # noqa: BLE001 - report it and go on to the next site
            failed.append(f"{site} ({e})")
    return healed, failed


def check_consistency(st: dict, attempts: int = 10) -> list[str]:
    """After the heal: etcd members' hashes at a common revision, PostgreSQL members' timelines.
    Members still catching up get a few seconds; what still differs then is a finding."""
    async def revision_now() -> int:
        etcd = lab.etcd_client(timeout=3)
        try:
            revisions = [int((await etcd.member_status(s["etcd"])).get("header", {}).get("revision", 0))
                         for s in st["sites"].values()]
            return min(revisions)
        finally:
            await etcd.close()

    def etcd_round() -> list[str] | None:
        try:
            revision = asyncio.run(revision_now())
            hashes = etcd_hashes({n: s["etcd"] for n, s in st["sites"].items()}, revision)
        except (EtcdError, LabError) as e:
            return [f"etcd could not be checked for consistency: {e}"]
        if not consistency.comparable(hashes):
            return None  # a compaction is being applied; ask again
        return consistency.etcd_problems(hashes, revision)

    def pg_round() -> list[str]:
        out = []
        for name, apis in (st.get("cluster_patroni") or {"": {}}).items():
            label = f"{name}: " if len(st.get("cluster_patroni") or {}) > 1 else ""
            try:
                url = next((u for n, u in apis.items() if st["sites"][n]["state"] == "up"), None) or _any_patroni(st)
                members = httpx.get(url + "/cluster", timeout=3).json().get("members", [])
                out += [label + p for p in consistency.postgres_problems(members)]
            except (httpx.HTTPError, ValueError, LabError) as e:
                out.append(f"{label}PostgreSQL could not be checked for consistency: {e}")
        return out

    problems: list[str] = []
    for _ in range(attempts):
        etcd_problems = etcd_round()
        pg_problems = pg_round()
        problems = (etcd_problems or []) + pg_problems
        if etcd_problems is not None and not problems:
            return []
        time.sleep(1.0)
    return problems


def etcd_hashes(endpoints: dict[str, str], revision: int) -> dict[str, tuple[int, int]]:
    """member -> (hash of its key-value store at revision, its compaction revision), from
    `etcdctl endpoint hashkv` (etcd's JSON gateway does not offer HashKV)."""
    # HashKV is one of etcd's maintenance calls: root only.
    argv = [etcd_binary(name="etcdctl"), "endpoint", "hashkv", "--endpoints", ",".join(endpoints.values()),
            f"--rev={revision}", "-w", "json", "--command-timeout=5s", *lab.etcdctl_flags()]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
    if r.returncode != 0:
        raise LabError(f"etcdctl endpoint hashkv: {(r.stderr or r.stdout).strip()[:300]}")
    by_url = {url: name for name, url in endpoints.items()}
    out = {}
    for row in json.loads(r.stdout):
        h = row.get("HashKV") or row.get("hash_kv") or {}
        out[by_url.get(row.get("Endpoint"), row.get("Endpoint"))] = (int(h.get("hash", 0)),
                                                                    int(h.get("compact_revision", 0)))
    return out


def _any_patroni(st: dict) -> str:
    for s in st["sites"].values():
        if s["state"] == "up":
            return s["patroni"]
    raise LabError("no site is up to ask Patroni")


def _inject(step: FaultStep, site: str, faults: list[Active], events: list[Event], progress: Progress,
            peer: str = "") -> None:
    silenced = ""
    writer = None
    # The fault begins when its injection does, not when the call returns: on a loopback lab a
    # power cut refuses connections at once, so a read in flight fails while lab.power_off is
    # still stopping the site, and a window opened after it counted that read against a site
    # "not under a fault" (issue 27). Silent cuts (netns, nftables) never showed it.
    began, began_wall = time.monotonic(), time.time()
    if step.fault == "power-cut":
        r = lab.power_off(site)
        silenced = r.get("silenced") or "none"
        detail = f"power cut, address {silenced}"
    elif step.fault == "isolate":
        detail = "isolated: " + lab.isolate(site)["isolated"]
    elif step.fault == "degrade":
        detail = "degraded: " + lab.degrade(site, step.loss, step.rate_kbit)["degraded"]
    elif step.fault == "partition":
        # Recorded while the rules land (and the processes stop, below): one that fails half
        # way is still undone on the way out, by drive(); the record proper follows.
        faults.append(Active(step.fault, site, time.monotonic(), peer=peer))
        detail = f"partition: link {site}-{peer} cut, every other link up: " + lab.cut(site, peer)["cut"]
        faults.pop()
    elif step.fault == "pause":
        faults.append(Active(step.fault, site, time.monotonic()))
        r = lab.pause(site, step.component)
        faults.pop()
        detail = f"paused {r['paused']} processes ({r['component']}) for {step.hold:g} s"
    elif step.fault == "flap":
        detail = (f"flapping: links to every other site down and up every {step.period / 2:g} s for "
                  f"{step.hold:g} s; down: " + lab.isolate(site)["isolated"])
    elif step.fault == "bad-value":
        writer = lab.bad_values(site)
        detail = (f"bad values: malformed views written under {writer.key} every {writer.every:g} s for "
                  f"{step.hold:g} s as {writer.role}")
    else:
        n = lab.stop_component(site, "agent")
        detail = f"ops tools lost: {n} agent process killed"
    faults.append(Active(step.fault, site, began, silenced=silenced, peer=peer, writer=writer))
    events.append(Event(began, began_wall, "fault", site, detail))
    progress(f"fault: {site}: {detail}")


def flap_toggles(since: float, period: float, hold: float) -> list[float]:
    """When a flap that took its links down at `since` toggles them (up, down, up, ...), every
    half period, strictly before it ends at since + hold, when it is healed. Pure."""
    half = period / 2
    n = int(hold // half)
    times = [since + half * k for k in range(1, n + 1)]
    return [t for t in times if t < since + hold - 1e-9]


def _flap(step: FaultStep, fault: Active, events: list[Event], progress: Progress) -> None:
    """Toggle the site's links on the flap's schedule in this (the steps') thread while the clients
    go on recording, then heal: every toggle is an event of the report."""
    down = True
    toggles = flap_toggles(fault.since, step.period or step.hold, step.hold)
    for at in toggles:
        time.sleep(max(0.0, at - time.monotonic()))
        if down:
            lab.unisolate(fault.site)
        else:
            lab.isolate(fault.site)
        down = not down
        events.append(Event(time.monotonic(), time.time(), "flap", fault.site, "links " + ("down" if down else "up")))
    time.sleep(max(0.0, fault.since + step.hold - time.monotonic()))
    progress(f"flap: {fault.site}: {len(toggles)} toggles in {step.hold:g} s")
    _end(fault, events, progress)


def _undo(f: Active) -> str:
    """Undo one fault; returns what was done."""
    if f.fault == "power-cut":
        if lab.status()["sites"][f.site]["state"] == "off":
            lab.power_on(f.site)
        return "power on"
    # Each fault undoes only itself: healing an isolation must not quietly mend a partition
    # that a later step means to heal (and judge) on its own.
    if f.fault in ("isolate", "flap"):
        lab.unisolate(f.site)
        return "links restored"
    if f.fault == "degrade":
        lab.undegrade(f.site)
        return "links restored"
    if f.fault == "partition":
        lab.uncut(f.site, f.peer)
        return f"link {f.site}-{f.peer} restored"
    if f.fault == "pause":
        return f"{lab.resume(f.site)['resumed']} paused processes continued"
    if f.fault == "bad-value":
        r = f.writer.stop() if f.writer is not None else {"written": 0, "failed": 0}
        return f"{r['written']} bad values written, {r['failed']} refused; the agent rewrites its view"
    lab.start_component(f.site, "agent")
    return "agent restarted"


def _end(f: Active, events: list[Event], progress: Progress) -> None:
    """Heal one fault whose time is up (a pause, a flap), leaving the site's others as they are."""
    done = _undo(f)
    f.healed = time.monotonic()
    events.append(Event(f.healed, time.time(), "heal", f.site, f"healed: {f.fault} ({done})"))
    progress(f"heal: {f.site}: {done}")
    _after_heal([f], events, progress)


def _heal(site: str, faults: list[Active], events: list[Event], progress: Progress) -> None:
    """Heal every fault still on the site (a partition: whichever end is named)."""
    todo = [f for f in faults if f.healed is None and site in (f.site, f.peer)]
    kinds = sorted({f.fault for f in todo})
    done = list(dict.fromkeys(_undo(f) for f in todo))
    now = time.monotonic()
    for f in todo:
        f.healed = now
    events.append(Event(now, time.time(), "heal", site, "healed: " + ", ".join(kinds)
                        + (f" ({', '.join(done)})" if done else "")))
    progress(f"heal: {site}")
    _after_heal(todo, events, progress)


# After bad values stop, the agents have this long to read the last one before they are counted.
AGENT_GRACE_S = 1.0


def dead_agents(st: dict) -> list[str]:
    """Sites whose agent the lab started and is no longer running (lab status). Pure."""
    return [n for n, s in st["sites"].items()
            if "agent" in s.get("processes", {}) and not s["processes"]["agent"]["alive"]]


def _after_heal(healed: list[Active], events: list[Event], progress: Progress) -> None:
    """What a healed fault promised, checked: after bad values, every agent still runs."""
    if not any(f.fault == "bad-value" for f in healed):
        return
    time.sleep(AGENT_GRACE_S)
    site = next(f.site for f in healed if f.fault == "bad-value")
    try:
        dead = dead_agents(lab.status())
        problems = [f"{n}'s agent exited" for n in dead]
    except LabError as e:
        dead, problems = [], [f"the agents could not be checked: {e}"]
    events.append(Event(time.monotonic(), time.time(), "check", site, "every agent alive after bad values", problems))
    progress(f"check: {'every agent alive' if not dead else 'agent exited in ' + ', '.join(dead)}")


def _settle(timeout: float, events: list[Event], progress: Progress) -> None:
    """After a heal: wait until the lab is healthy again (every site up, every standby streaming)
    and, with agents, etcd's leader is out of the primary's site again (the steady state each
    fault should start from), then check that the replicas agree. Each finding is recorded in a
    `check` event and fails the drill; the drill goes on."""
    t0 = time.monotonic()
    progress(f"waiting for the lab to be healthy again (at most {timeout:g} s)")
    try:
        st = wait_healthy(timeout)
    except LabError as e:
        events.append(Event(time.monotonic(), time.time(), "check", "", f"lab healthy within {timeout:g} s of the heal",
                            [str(e)]))
        progress(f"check: {e}")
        return
    took = time.monotonic() - t0
    if any(s.get("console") for s in st["sites"].values()):
        left = max(1.0, timeout - took)
        if not lab.settled(timeout=left):
            progress(f"note: etcd's leader is still in the primary's site {left:.0f} s after the lab was healthy")
    problems = check_consistency(st)
    events.append(Event(time.monotonic(), time.time(), "check", "",
                        f"replicas agree after the heal (healthy {took:.1f} s after it)", problems))
    progress("check: replicas agree" if not problems else "check: " + "; ".join(problems))


def healed_at(f: Active, events: list[Event], end: float) -> float:
    if f.healed is not None:
        return f.healed
    for e in events:
        if e.kind == "heal" and e.site == f.site and e.at >= f.since:
            return e.at
    return end


def event_doc(e: Event, start: float) -> dict:
    doc = {"t": round(e.at - start, 3), "wall": e.wall, "kind": e.kind, "site": e.site, "detail": e.detail}
    if e.kind == "check":
        doc["problems"] = list(e.problems)
    return doc


def findings(events: list[Event], start: float) -> list[str]:
    """The failures the checks during the drill found (after each heal: the lab healthy again,
    the replicas agreeing, every agent alive after bad values), each with when. Pure."""
    return [f"{e.detail} ({e.at - start:.1f} s into the drill): {p}" for e in events if e.kind == "check"
            for p in e.problems]


def fault_rows(faults: list[Active], events: list[Event], end: float) -> list[tuple[str, str, float, float]]:
    """(fault, site, since, healed at) of every fault injected, as the judges take them."""
    return [(f.fault, f.site, f.since, healed_at(f, events, end)) for f in faults]


def silenced(faults: list[Active]) -> dict[str, str]:
    """site -> how its power cut silenced it (link-down, nftables-drop, none): what was measured."""
    return {f.site: f.silenced for f in faults if f.silenced}


def finish_report(report: dict, *, start: float, start_wall: float, final: dict, agents: bool,
                  events: list[Event], **extra: object) -> dict:
    """What every drill's report carries beside its judgement: when it started, the lab's network
    mode, whether agents ran, the events, versions and the machine, and each fault's wall-clock
    times (the ledger's and the claims' clock). `extra` keys go in after `agents`."""
    report.update({
        "started": start_wall, "net": final["net"], "agents": agents, **extra,
        "events": [event_doc(e, start) for e in events],
        "versions": {"firebreak": __version__, "python": platform.python_version()},
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "arch": platform.machine()},
    })
    for f in report["faults"]:
        f["start_wall"] = round(start_wall + f["at_s"], 3)
        f["end_wall"] = round(start_wall + f["healed_at_s"], 3)
    return report
