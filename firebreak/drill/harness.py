"""The drill harness: what every drill runner shares, whatever the lab.

Driving a scenario's steps while the runner's clients work (`drive`): faults injected and each
healed by undoing only itself, flaps toggled on their schedule, pauses continued when their time
is up, and whatever is left healed on the way out (Ctrl-C, SIGTERM, an error); waiting for the
lab's health; the checks after a heal (every agent alive, the replicas agreeing); the drill's
declaration in etcd (`Declaration`: the agents record what they see during it as the drill's, not
as outages); and the part of the report every drill has (`finish_report`). The runners
(cluster_run.py for the default lab, estate_run.py for a lab built from a topology) bring the
workload and the judging; neither imports the other, and runner.py chooses between them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
from firebreak.control.keys import DEFAULT as DEFAULT_KEYS
from firebreak.drill import consistency, evidence
from firebreak.drill.scenario import ROLE_TARGETS, FaultStep, HealStep, Scenario, WaitStep
from firebreak.errors import DrillAborted, EtcdError, LabError
from firebreak.lab import lab
from firebreak.lab.runtime import etcd_binary

Progress = Callable[[str], None]


@dataclass
class Event:
    at: float        # monotonic
    wall: float
    kind: str        # fault | heal | flap (one of a flap's toggles) | check (after a heal) | evidence
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


# -- the drill's declaration (control/keys.py drills/<site>, control/drills.py) -----------------

# A declaration outlives its runner by this long: the runner keeps its lease alive while it runs,
# so a runner that is killed (SIGKILL, a lost host) stops marking its sites as drilling within
# seconds, not at its plan's end. Outages recorded after that are real ones, as they would be:
# a fault a dead runner left behind is nobody's rehearsal.
DECLARE_TTL = 15
# Beyond the plan's longest run (planned_seconds), how long the agents go on believing it: a
# runner that hangs with its keepalive still beating stops declaring then.
DECLARE_MARGIN = 120.0
# run_steps' limits, as planned_seconds counts them.
UNHELD_WAIT = 62.0       # a fault held until writes resume: at most 60 s for them, then 2 s
PAUSE_WAIT = 30.0        # after a pause is continued: at most 30 s for writes
INJECT_S = 10.0          # injecting or healing a fault (stopping a site's processes, nft rules)
SETTLE_CHECKS_S = 60.0   # after a settle: etcd's leader placed, the replicas compared
END_WAIT = 120.0 + 90.0 + 1.0  # every site healthy, then writes flowing, then the last second


def drill_id(name: str, start_wall: float) -> str:
    """The drill's id, written into its declaration, its report and every ledger entry it
    classifies: the scenario's name and when it started. Pure."""
    return f"{name}@{start_wall:.3f}"


def planned_seconds(scenario: Scenario) -> float:
    """The longest the scenario's steps can take with every wait of run_steps at its limit
    (waits, holds, waits for writes to resume, settles, the end's waits for health): the
    declaration's `until` is this past the drill's start, plus DECLARE_MARGIN. Pure."""
    total = END_WAIT
    for step in scenario.steps:
        if isinstance(step, WaitStep):
            total += step.wait
        elif isinstance(step, HealStep):
            total += INJECT_S + (step.settle + SETTLE_CHECKS_S if step.settle else 0.0)
        else:
            total += INJECT_S + (step.hold + (PAUSE_WAIT if step.fault == "pause" else 0.0) if step.hold
                                 else UNHELD_WAIT)
    return total


def declaration_value(drill: str, since: float, until: float, fault: str) -> str:
    """What `drills/<site>` holds (control/drills.Drill.from_value reads it). Pure."""
    return json.dumps({"drill": drill, "since": round(since, 3), "until": round(until, 3), "fault": fault,
                       "runner": platform.node()})


class Declaration:
    """The drill declared in etcd, site by site, before each fault (control/keys.py
    `drills/<site>`): the agents' coordinator records the site incidents and service outages
    that open there while it lasts as the drill's (`"source": "drill"`), which claims, the status
    page and the credits leave out, and fails over all the same. Every site's key is under one
    lease, kept alive by a task of its own while the drill runs, and revoked at its end: all the
    declarations go at once. Written as etcd's root, the identity the drill runner already uses
    (its consistency checks need root); no agent may write it (control/keys.py role_grants).

    The etcd client lives in a thread of its own with its event loop, so the keepalive beats
    while the steps sleep in theirs."""

    def __init__(self, drill: str, until: float, connect: Callable[[], object] | None = None,
                 ttl: int = DECLARE_TTL, clock: Callable[[], float] = time.time):
        self.drill, self.until, self.ttl, self.clock = drill, until, ttl, clock
        self._connect = connect or (lambda: lab.etcd_client(timeout=2, patience=10))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._etcd = None
        self._lease = 0
        self._keeper: concurrent.futures.Future | None = None
        self._declared: dict[str, str] = {}  # site -> its value, written again if the lease is lost

    def open(self) -> None:
        """Grant the lease and start keeping it alive: LabError when etcd will not, before any fault."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="drill-declaration", daemon=True)
        self._thread.start()
        self._run(self._grant(), "grant the drill's declaration a lease in etcd")
        self._keeper = asyncio.run_coroutine_threadsafe(self._keep(), self._loop)

    def site(self, site: str, fault: str) -> None:
        """Declare `site` before its fault: LabError when etcd refuses, so the fault is never
        injected undeclared (the agents would record a real outage)."""
        value = declaration_value(self.drill, self.clock(), self.until, fault)
        self._run(self._put(site, value), f"declare the drill over {site} in etcd before faulting it "
                  "(undeclared, the agents would record its loss as a real outage)")

    def close(self) -> str:
        """End the declaration (every site at once); returns what was done, for the progress."""
        if self._loop is None:
            return ""
        try:
            if self._keeper is not None:
                self._keeper.cancel()
            self._run(self._end(), "remove the drill's declaration")
            return f"drill {self.drill} no longer declared"
        except LabError as e:
            return f"{e}; it goes by itself within {self.ttl} s"
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)
            if not self._loop.is_running():  # a loop stuck in a call is left to the daemon thread
                self._loop.close()
            self._loop = None

    def _run(self, coro, what: str):
        assert self._loop is not None
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)
        except (EtcdError, concurrent.futures.TimeoutError) as e:
            raise LabError(f"could not {what}: {e}") from e

    async def _grant(self) -> None:
        if self._etcd is None:
            self._etcd = self._connect()
        self._lease = await self._etcd.grant(self.ttl)

    async def _put(self, site: str, value: str) -> None:
        await self._etcd.put(DEFAULT_KEYS.drill(site), value, lease=self._lease)
        self._declared[site] = value

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 5)
            try:
                if await self._etcd.keepalive(self._lease) <= 0:
                    # Gone (this process stopped for longer than the TTL): declared again.
                    await self._grant()
                    for site, value in list(self._declared.items()):
                        await self._put(site, value)
            except EtcdError:
                pass  # the next beat tries again: the TTL covers several missed ones

    async def _end(self) -> None:
        try:
            if self._lease:
                await self._etcd.revoke(self._lease)
        finally:
            if self._etcd is not None:
                await self._etcd.close()


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
          events: list[Event], progress: Progress, unfreeze: str | None = None,
          declaration: Declaration | None = None) -> float:
    """Run the scenario's steps while the (started) clients work, then stop them; returns when
    the history ends. With `unfreeze` (an operator token), the agents frozen for a Patroni-alone
    drill are unfrozen whatever happened. With a `declaration`, the drill is declared in etcd
    before its first fault (each site before its own) and no longer once every fault is healed
    and the lab has recovered, whatever happened."""
    try:
        if declaration is not None:
            declaration.open()
            progress(f"drill {declaration.drill} declared in etcd: the agents record what its faults cause "
                     "as the drill's, not as outages")
        run_steps(scenario, rto_of, faults, events, progress, resolve, declaration=declaration)
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
        if declaration is not None:
            # Last: the recovery after the last heal (the old primary rejoining) is the drill's too.
            progress(declaration.close())
    return end


def run_steps(scenario: Scenario, rto_of: Callable[[float], float | None], faults: list[Active],
               events: list[Event], progress: Progress, resolve: Callable[[str], str | None],
               declaration: Declaration | None = None) -> None:
    """The scenario's steps, then healing whatever it left, then waiting for writes to flow.
    `rto_of(at)`: the write unavailability after a fault at `at`, None while writes have not
    resumed; `resolve(role)`: the site a step aimed at a role ("primary", "sync-standby") faults;
    `declaration`: each faulted site is declared there first."""
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
            _inject(step, site, faults, events, progress, peer=peer, declaration=declaration)
            fault = faults[-1]
            at = fault.since
            if step.fault == "flap":
                _flap(step, fault, events, progress)
            elif step.fault == "pause":
                # A pause lasts its duration even when writes resumed sooner (a failover): the
                # paused processes are continued then, and the old primary must rejoin by itself.
                time.sleep(max(0.0, at + step.hold - time.monotonic()))
                if rto_of(at) is None:
                    _evidence(events, progress, "writes have not resumed by the pause's end")
                _end(fault, events, progress)
                deadline = time.monotonic() + 30
                while rto_of(at) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
            elif step.hold:  # bad values always last theirs
                time.sleep(step.hold)
            else:
                deadline, asked = time.monotonic() + 60, False
                while rto_of(at) is None and time.monotonic() < deadline:
                    if not asked and time.monotonic() - at > EVIDENCE_AFTER:
                        asked = True
                        _evidence(events, progress, f"writes have not resumed {EVIDENCE_AFTER:g} s after the fault")
                    time.sleep(0.1)
                time.sleep(2.0)
            rto = rto_of(at)
            if rto is None:
                _evidence(events, progress, "writes did not resume")
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
            # Every member asked, the leader's own view believed: a member just back from
            # isolation answers from what it knew before.
            urls = {n: u for n, u in apis.items() if st["sites"][n]["state"] == "up"}
            try:
                members = lab.members_view(urls or {"any": _any_patroni(st)}, timeout=3)
            except LabError as e:
                out.append(f"{label}PostgreSQL could not be checked for consistency: {e}")
                continue
            if members:
                out += [label + p for p in consistency.postgres_problems(members)]
            else:
                out.append(f"{label}PostgreSQL could not be checked for consistency: no member's Patroni answered")
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
            peer: str = "", declaration: Declaration | None = None) -> None:
    if declaration is not None:
        for s in (site, peer):
            if s:
                declaration.site(s, step.fault)
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



# Writes not back this long after a fault (the default objective is 3 s): keep what PostgreSQL's
# connections are doing, while it is still so.
EVIDENCE_AFTER = 5.0


def _evidence(events: list[Event], progress: Progress, why: str) -> None:
    """An `evidence` event: every lab PostgreSQL server's connections by what they are doing
    (drill/evidence.py), read from their process titles. Never fails the drill."""
    try:
        line = evidence.describe(evidence.summary(lab.postgres_backends()))
    except OSError as e:
        line = f"could not read the servers' processes: {e}"
    events.append(Event(time.monotonic(), time.time(), "evidence", "", f"{why}; PostgreSQL: {line}"))
    progress(f"{why}; PostgreSQL: {line}")

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
