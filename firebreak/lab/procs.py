"""Starting and stopping the lab's processes: only ours, always by PID.

Every process the lab starts carries FIREBREAK_LAB=<lab id> and FIREBREAK_SITE=<site> in its
environment, and so do its descendants (PostgreSQL's postmaster detaches from Patroni with
setsid, so ancestry alone cannot find it). A PID is acted on only after checking that marker
or the start time recorded when we launched it, so a recycled PID is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

ENV_LAB = "FIREBREAK_LAB"
ENV_SITE = "FIREBREAK_SITE"


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # /proc/<pid>/stat starttime, to tell our process from a recycled PID
    site: str
    component: str

    def as_dict(self) -> dict:
        return asdict(self)


def start_time(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # a zombie is dead for our purposes
        return None
    return int(fields[19])


def alive(proc: Proc) -> bool:
    return start_time(proc.pid) == proc.start


def spawn(argv: list[str], *, site: str, component: str, lab_id: str, log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None, netns: str | None = None, user: tuple[int, int] | None = None) -> Proc:
    """Start a daemon in its own session, its output appended to log."""
    if user is not None:
        argv = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--"] + argv
    if netns is not None:
        argv = ["ip", "netns", "exec", netns] + argv
    full_env = dict(os.environ if env is None else env)
    full_env[ENV_LAB] = lab_id
    full_env[ENV_SITE] = site
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab", buffering=0) as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {component}: {' '.join(argv)}\n".encode())
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             cwd=cwd, env=full_env, start_new_session=True, close_fds=True)
    st = start_time(p.pid)
    return Proc(pid=p.pid, start=st if st is not None else -1, site=site, component=component)


def marked(lab_id: str, site: str | None = None) -> list[int]:
    """PIDs whose environment carries this lab's marker (and site's, if given)."""
    want = f"{ENV_LAB}={lab_id}".encode()
    want_site = f"{ENV_SITE}={site}".encode() if site else None
    me = os.getpid()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if want in env and (want_site is None or want_site in env):
            if start_time(int(entry.name)) is not None:
                out.append(int(entry.name))
    return out


def power_cut(pids: Iterable[int], rescan: Callable[[], list[int]] | None = None) -> int:
    """Kill at once: freeze every process first so none of them sends another byte, then kill.

    With `rescan` (the site's marked processes, found again), processes forked while the first
    ones were being frozen are frozen too, until no new one appears: a PostgreSQL backend forked
    at that moment would otherwise outlive its postmaster, keep its shared memory attached and
    stop the site's PostgreSQL from ever starting again ("pre-existing shared memory block is
    still in use"), which a drill found after 29 power cuts."""
    found = list(dict.fromkeys(pids))
    frozen: set[int] = set()
    for _ in range(50):
        new = [p for p in found if p not in frozen]
        if not new:
            break
        _signal(new, signal.SIGSTOP)
        frozen.update(new)
        if rescan is None:
            break
        found = list(dict.fromkeys([*found, *rescan()]))
    _signal(list(frozen), signal.SIGKILL)
    return len(frozen)


def stat_of(pid: int) -> tuple[str, int, int] | None:
    """(command name, parent PID, start time) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return comm, int(fields[1]), int(fields[19])


def postgres_family(table: dict[int, tuple[str, int]]) -> list[int]:
    """Of a site's marked processes (pid -> (command name, parent PID)), PostgreSQL's: every
    process named `postgres` (the postmaster, and backends and auxiliaries, which keep that
    name however their title reads) and anything they started (an archive or restore command).
    Patroni, etcd and the rest are not PostgreSQL and stay running: a storage hang stops the
    database, not the host. Pure."""
    roots = {pid for pid, (comm, _) in table.items() if comm == "postgres"}
    family = set(roots)
    for pid in table:
        seen, p = set(), pid
        while p in table and p not in seen and p not in family:
            seen.add(p)
            p = table[p][1]
        if p in family:
            family.add(pid)
    return sorted(family)


# What a pause can stop short of a whole site: a storage hang (PostgreSQL), or etcd alone (the
# control plane's store gone while every database server is healthy: Patroni's failsafe case).
PAUSE_COMPONENTS = ("postgres", "etcd")


def process_table() -> dict[int, tuple[str, int]]:
    """Every live process: pid -> (command name, parent PID)."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = stat_of(int(entry.name))
            if st is not None:
                out[int(entry.name)] = (st[0], st[1])
    return out


def with_descendants(table: dict[int, tuple[str, int]], roots: Iterable[int]) -> list[int]:
    """The roots and every process descended from one of them. Pure. PostgreSQL's backends and
    auxiliaries need this: each writes its title ("postgres: firebreak: checkpointer") over the
    memory /proc/PID/environ reads, so the lab's marker is gone from all but the postmaster."""
    family = {r for r in roots if r in table}
    children: dict[int, list[int]] = {}
    for pid, (_, ppid) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(family)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in family:
                family.add(child)
                todo.append(child)
    return sorted(family)


def site_family(lab_id: str, site: str, known: Iterable[int] = ()) -> list[int]:
    """Every process of a site: its marked ones, `known` (PIDs the lab recorded), and all their
    descendants. The descendants matter: PostgreSQL's backends and walsenders carry no marker
    (their titles overwrite it), and a power cut that spared them let a backend of the dead
    site acknowledge a commit after the cut (the walsender, spared too, still streamed to the
    synchronous standby): seen in a loopback lab, where no silenced address stops them."""
    return with_descendants(process_table(), [*known, *marked(lab_id, site)])


def postgres_of(table: dict[int, tuple[str, int]], pids: Iterable[int]) -> list[int]:
    """PostgreSQL's processes among these (a site's processes), by postgres_family."""
    pids = set(pids)
    return postgres_family({p: row for p, row in table.items() if p in pids})


def pause(lab_id: str, site: str, only: str | None = None, known: Iterable[int] = (),
          roots: Iterable[int] = ()) -> list[Proc]:
    """SIGSTOP a site's processes: its marked ones, `known` (the PIDs the lab recorded at start)
    and all their descendants; with only='postgres', PostgreSQL's of those alone; with
    only='etcd', `roots` (etcd's recorded PIDs) and their descendants alone. Found again
    until no new one appears, as power_cut does: a process forked while the others froze would
    go on (a PostgreSQL backend, serving writes the paused site should not). Returns what was
    stopped, with start times, so that only those very processes are ever continued."""
    known, roots = list(known), list(roots)

    def scan() -> list[int]:
        if only == "etcd":
            return with_descendants(process_table(), roots)
        found = site_family(lab_id, site, known)
        return postgres_of(process_table(), found) if only == "postgres" else found

    stopped: dict[int, Proc] = {}
    for _ in range(50):
        new = [p for p in scan() if p not in stopped]
        if not new:
            break
        for pid in new:
            st = start_time(pid)
            if st is None:
                continue
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            stopped[pid] = Proc(pid=pid, start=st, site=site, component="paused")
    return list(stopped.values())


def resume(paused: Iterable[Proc]) -> int:
    """SIGCONT each paused process that is still the one we stopped (same start time: a recycled
    PID is left alone). Returns how many were continued."""
    n = 0
    for p in paused:
        if alive(p):
            try:
                os.kill(p.pid, signal.SIGCONT)
                n += 1
            except ProcessLookupError:
                pass
    return n


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def terminate(pids: Iterable[int], timeout: float = 10.0, still: Callable[[], list[int]] | None = None) -> None:
    """SIGTERM, wait up to timeout, then SIGKILL whatever is left."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            # A stopped process (a pause left behind) would hold SIGTERM pending forever;
            # systemd sends SIGCONT after the stop signal for the same reason.
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in (still() if still else pids) if start_time(p) is not None]
        if not left:
            return
        time.sleep(0.1)
    power_cut([p for p in (still() if still else pids) if start_time(p) is not None])
