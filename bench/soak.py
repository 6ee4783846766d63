"""Soak: the lab under a steady workload for a long time, every resource that could grow without
bound sampled, each one's growth fitted and projected to 90 days; power cuts of the primary's
site at the start and at the end (--failovers of each), to show the failover does not slow down
with age.

Sampled every --interval seconds:
- etcd, per member: database size on disk and in use, the revision, and from its metrics port its
  Go heap (in use, and the goal set at each collection), goroutines, watchers and keys;
- resident memory and open file descriptors of every lab process (agent, app, Patroni, door, etcd,
  PostgreSQL and its children);
- the lab's log files; the WAL each PostgreSQL member keeps; the bytes Firebreak keeps in etcd
  (audit log, ledger, release store).

It starts from the steady state of months of uptime: the audit log and the release store are
filled to their retention before the first sample (seed_retained).

Each resource's growth is the Theil-Sen slope over the second half of the soak (the first half is
warm-up: caches filling, the first compactions), through every sample, or through the mean of each
cycle of a saw-tooth (etcd's memory; its database in use less the revisions compaction keeps,
etcd_live), or through the floor of each window of what follows the load up and down (open
files, kind by kind): bench/growth.py says why each. Projected
90 days ahead from the last sample, against its limit: etcd's backend quota for the database and
for Firebreak's keys, the machine's memory for resident memory, each process's own open-file
limit, the free disk for logs and WAL; no further than a retention rule or a setting bounds it
(retention_cap, descriptor_caps).
Bar: nothing projected past 10% of its limit; the failovers at the end as fast as at the start.

Run: .venv/bin/python bench/soak.py --minutes 30   (writes docs/bench/soak.json and soak.svg)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import growth  # noqa: E402
from firebreak.claims.settings import Settings  # noqa: E402
from firebreak.claims.store import most_connections  # noqa: E402
from firebreak.control import ops  # noqa: E402
from firebreak.control.etcd import EtcdError  # noqa: E402
from firebreak.control.keys import AUDIT_KEEP, RELEASES_KEEP  # noqa: E402
from firebreak.control.keys import DEFAULT as KEYS  # noqa: E402
from firebreak.drill import runner  # noqa: E402
from firebreak.drill.scenario import FaultStep, Scenario  # noqa: E402
from firebreak.drill.workload import History, Reader, Writer, seed_report  # noqa: E402
from firebreak.lab import lab  # noqa: E402
from firebreak.lab.config import ETCD_COMPACTION_S, ETCD_QUOTA, ETCD_SNAPSHOT_COUNT, PG_WAL_MB  # noqa: E402
from firebreak.lab.layout import PORTS  # noqa: E402
from firebreak.lab.state import lab_home, load_secrets  # noqa: E402

DAYS = 90
# A compaction frees a retention's revisions at once: about 1.3 MiB of a member's database in use
# in the soak (5 minutes at 18 revisions a second); between compactions it only rises.
COMPACTION_DROP = 100_000
# "The failover at the end is as fast as at the start": the median of the end's power cuts at most
# this much above the start's. Three cuts of one fresh lab spread 0.04-0.16 s (runs 8-10's
# starts); a control plane slowed by its age is what this is for, run 6's 1.58 s -> 3.12 s.
AS_FAST = 1.10


def lab_processes(st: dict) -> dict[str, psutil.Process]:
    """name -> process, for every process the lab started and their children (PostgreSQL's)."""
    out = {}
    for site, s in st["sites"].items():
        for component, p in s["processes"].items():
            try:
                proc = psutil.Process(p["pid"])
            except psutil.Error:
                continue
            out[f"{site}/{component}"] = proc
    for site in st["sites"]:
        # PostgreSQL's postmaster (its backends come and go) is Patroni's to start: find it by its pid file.
        pidfile = lab_home() / "sites" / site / "pgdata" / "postmaster.pid"
        try:
            out[f"{site}/postgres"] = psutil.Process(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, IndexError, psutil.Error):
            continue
    return out


async def etcd_sample(st: dict) -> dict:
    etcd = lab.etcd_client(timeout=2)
    try:
        members = {}
        for site, s in st["sites"].items():
            try:
                m = await etcd.member_status(s["etcd"])
                members[site] = {"db": int(m.get("dbSize", 0)), "db_in_use": int(m.get("dbSizeInUse", 0)),
                                 "revision": int(m.get("header", {}).get("revision", 0))}
            except EtcdError:
                continue
        kept, counts = {}, {}
        for name, prefix in (("audit", KEYS.audit), ("ledger", KEYS.ledger), ("releases", KEYS.releases)):
            kvs = await etcd.get_prefix(prefix)
            kept[name] = sum(len(kv.key) + len(kv.value) for kv in kvs)
            counts[name] = len(kvs)
        return {"members": members, "kept": kept, "counts": counts, "etcd_metrics": await etcd_metrics(st)}
    finally:
        await etcd.close()


async def seed_retained(sites: list[str]) -> dict[str, int]:
    """Start from the steady state of months of uptime: the audit log and the release store filled
    to their retention (keys.AUDIT_KEEP, keys.RELEASES_KEEP), as consoles and operators write them,
    dated before the soak. Otherwise both grow through the whole soak (at the operator's pace the
    audit log reaches its cap after two days), and every cost that scales with them, etcd's key
    index and the reads of the newest audit page, is measured at a fraction of its steady value."""
    etcd = lab.etcd_client(timeout=10)
    now = time.time()
    try:
        puts = []
        for i in range(AUDIT_KEEP):
            at, site = now - 86400 - (AUDIT_KEEP - i) * 30.0, sites[i % len(sites)]
            entry = ops.audit_entry("soak-operator", ("release", "deploy", "freeze")[i % 3],
                                    {"version": f"seed-{i}"}, site, "10.77.0.1", "ok")
            puts.append((KEYS.audit_entry(at, site), json.dumps({**entry, "at": at})))
        for i in range(RELEASES_KEEP):
            record = json.loads(ops.release_record(f"seed-{i}", "seeded by the soak"))
            puts.append((KEYS.release(f"seed-{i}"), json.dumps({**record, "created": now - 86400 + i})))
        await etcd.put_all(puts)
        return {"audit": AUDIT_KEEP, "releases": RELEASES_KEEP}
    finally:
        await etcd.close()


# What each etcd member says of itself on its plain metrics port. RSS alone cannot tell a leak from
# a Go heap that has not settled (Go keeps freed pages until its scavenger returns them); the
# usual culprits of a slow etcd leak are goroutines, watchers and watch streams that are never closed.
# The heap in use swings by half between collections (26 to 41 MiB on one member within ten minutes);
# the goal Go sets at each collection, twice the heap found live (GOGC=100), moves only with it.
ETCD_METRICS = ("go_memstats_heap_inuse_bytes", "go_memstats_next_gc_bytes", "etcd_server_proposals_applied_total",
                "go_goroutines", "etcd_debugging_mvcc_watcher_total",
                "etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_keys_total")


async def etcd_metrics(st: dict) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    # Uncompressed: etcd gzips its metrics for clients that accept it, and the compressor it makes
    # for each scrape showed up in its own heap profile.
    async with httpx.AsyncClient(timeout=2, headers={"Accept-Encoding": "identity"}) as c:
        for site, s in st["sites"].items():
            try:
                text = (await c.get(f"http://{urlsplit(s['etcd']).hostname}:{PORTS['etcd_health']}/metrics")).text
            except httpx.HTTPError:
                continue
            out[site] = {name: float(m.group(1)) for name in ETCD_METRICS
                         if (m := re.search(rf"^{name} (\S+)$", text, re.M))}
    return out


PORT_NAMES = {port: name for name, port in PORTS.items()}
TCP_STATES = {"01": "", "0A": "listening", "08": " (close-wait: the peer hung up, the socket not closed)"}


def descriptors(pid: int) -> dict[str, int]:
    """What a process's open files are: TCP sockets by the lab port at either end (clients of its
    own port, or connections to another component's), other sockets, pipes, event descriptors,
    files. A count that wanders with the load (pooled connections, a door's idle connections)
    and one that only climbs (a file, a pipe or a socket in close-wait never closed) look alike in
    a total; here they do not. TCP tables are read from the process's own /proc entry, which is
    its network namespace's."""
    kinds: dict[str, int] = {}
    sockets: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            sockets.add(target[8:-1])
            continue
        kind = ("pipe" if target.startswith("pipe:") else target.partition("]")[0] + "]"
                if target.startswith("anon_inode:") else "file")
        kinds[kind] = kinds.get(kind, 0) + 1
    for proto in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[9] not in sockets:
                continue
            sockets.discard(f[9])
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in f[1:3])
            state = TCP_STATES.get(f[3], f" (state {f[3]})")
            if state == "listening":
                role = "tcp listening"
            elif local in PORT_NAMES:
                role = f"tcp from clients of {PORT_NAMES[local]}{state}"
            elif remote in PORT_NAMES:
                role = f"tcp to {PORT_NAMES[remote]}{state}"
            else:
                role = f"tcp other{state}"
            kinds[role] = kinds.get(role, 0) + 1
    if sockets:
        kinds["other sockets"] = len(sockets)
    return kinds


def open_files_limit(pid: int) -> int:
    """The soft limit on a process's open files, from /proc (prlimit on another user's process
    needs a capability the benchmark may not have: Go raises its own to the hard limit, Python
    does not)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return 2**31 if soft == "unlimited" else int(soft)
    raise OSError(f"no open-files limit in /proc/{pid}/limits")


def wal_bytes(pg_wal: Path) -> int:
    """The WAL a PostgreSQL member keeps. It grows without bound while a replication slot waits for
    a member that is gone (a burned site's) unless max_slot_wal_keep_size bounds it, as the lab's
    does (lab.config.PG_WAL_MB); Patroni 4 drops a departed member's slot after member_slots_ttl
    (30 minutes)."""
    try:
        return sum(e.stat().st_size for e in os.scandir(pg_wal) if e.is_file())
    except OSError:  # the member is down or its data directory is being rebuilt
        return 0


def sample(st: dict, procs: dict[str, psutil.Process], home: Path) -> dict:
    out: dict = {"t": time.time(), "rss": {}, "fds": {}, "fd_limits": {}, "fd_kinds": {}}
    for name, p in procs.items():
        try:
            with p.oneshot():
                out["rss"][name] = p.memory_info().rss
                out["fds"][name] = p.num_fds()
            out["fd_kinds"][name] = descriptors(p.pid)
            out["fd_limits"][name] = open_files_limit(p.pid)
        except (psutil.Error, OSError):
            continue
    out["logs"] = sum(f.stat().st_size for f in home.rglob("*.log") if f.is_file())
    out["pg_wal"] = {site: wal_bytes(home / "sites" / site / "pgdata" / "pg_wal") for site in st["sites"]}
    out.update(asyncio.run(etcd_sample(st)))
    return out


def compact(samples: list[dict]) -> list[dict]:
    """The samples as stored: each process's open-files limits only where they differ from the
    last ones stored, since they rarely change and were an eighth of a two-hour run's 2 MB file
    (series() reads the first sample's)."""
    last = None
    for s in samples:
        if s.get("fd_limits") is None:
            continue
        if s["fd_limits"] == last:
            del s["fd_limits"]
        else:
            last = s["fd_limits"]
    return samples


def machine_limits() -> dict[str, int]:
    """The machine's memory and the free disk where the lab keeps its files (or would)."""
    home = lab_home()
    where = next((p for p in (home, *home.parents) if p.exists()), Path("/"))
    return {"memory": psutil.virtual_memory().total, "disk_free": shutil.disk_usage(where).free}


def fit_of(name: str, samples: list[dict], window: float) -> tuple[str, float | None]:
    """How to fit a resource (bench/growth.py): through every sample, or through the mean or the
    floor of each window, and the window's seconds. A saw-tooth's mean over a whole number of its
    cycles is the same wherever the windows start; over windows that cut cycles, each mean depends
    on where in a cycle it starts and ends, and the drift of that phase reads as growth. The
    database in use moves with compaction, every 5 minutes (`window`, 600 s by default, two
    cycles). etcd's memory moves with the raft log it keeps between snapshots, one every
    --snapshot-count entries (about 9 minutes in the soak): the 80-minute run's heaps grew 2.5-2.7
    MiB an hour through 10-minute means, 1.0-2.2 through means of its own 542-second cycle. Open
    files follow the load's concurrency (pooled connections, the doors' idle connections): a
    leaked one is never closed and lifts the floor."""
    if name.endswith(("db in use", "WAL")):  # WAL: segments recycled at each checkpoint (5 minutes)
        return "mean", window
    if name.endswith(("heap goal", "/etcd memory")):
        return "mean", snapshot_period(samples) or window
    if name.endswith("open files"):
        return "floor", window
    return "every", None


def snapshot_period(samples: list[dict]) -> float | None:
    """Seconds between raft snapshots in this run: ETCD_SNAPSHOT_COUNT entries at the rate the
    members applied them (etcd_server_proposals_applied_total, or the revision in runs that did not
    sample it: it moves within 2% of the applied index)."""
    def applied(s: dict) -> float | None:
        for site, m in sorted(s.get("members", {}).items()):
            v = s.get("etcd_metrics", {}).get(site, {}).get("etcd_server_proposals_applied_total", m.get("revision"))
            if v:
                return v
        return None
    pts = [(s["t"], v) for s in samples if (v := applied(s)) is not None]
    if len(pts) < 2 or pts[-1][1] <= pts[0][1]:
        return None
    return ETCD_SNAPSHOT_COUNT / ((pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]))


def series(samples: list[dict], limits: dict[str, int] | None = None
           ) -> dict[str, tuple[list[tuple[float, float]], float, str]]:
    """resource -> (points (t, value), limit, unit); `limits` as the run measured them (older runs
    stored none: then this machine's, now)."""
    t0 = samples[0]["t"]
    limits = limits or machine_limits()
    mem, disk = limits["memory"], limits["disk_free"]
    out: dict = {}

    def add(name: str, value_of, limit: float, unit: str) -> None:
        pts = [(s["t"] - t0, v) for s in samples if (v := value_of(s)) is not None]
        if pts:
            out[name] = (pts, limit, unit)
    for site in samples[0]["members"]:
        add(f"etcd {site} db on disk", lambda s, x=site: s["members"].get(x, {}).get("db"), ETCD_QUOTA, "B")
        add(f"etcd {site} db in use", lambda s, x=site: s["members"].get(x, {}).get("db_in_use"), ETCD_QUOTA, "B")
        # Go's heap: the goal it sets at each collection (twice what was live), not the heap in
        # use, which also holds the garbage of the last collection and is plotted, not projected:
        # its floor per snapshot cycle wandered 28.2-29.5 MiB on a member whose goal stayed
        # 42.4-42.7 MiB, and that wander fitted 11% of the machine's memory in 90 days. What the
        # machine's memory limits is the resident memory, projected below.
        add(f"etcd {site} heap goal", lambda s, x=site: s.get("etcd_metrics", {}).get(x, {}).get(
            "go_memstats_next_gc_bytes"), mem, "B")
    for kept in ("audit", "ledger", "releases"):
        add(f"etcd keys: {kept}", lambda s, k=kept: s["kept"].get(k), ETCD_QUOTA, "B")
    for name in samples[0]["rss"]:
        add(f"{name} memory", lambda s, x=name: s["rss"].get(x), mem, "B")
        add(f"{name} open files", lambda s, x=name: s["fds"].get(x), samples[0]["fd_limits"].get(name, 1024), "")
    for site in samples[0].get("pg_wal", {}):
        add(f"{site}/postgres WAL", lambda s, x=site: s.get("pg_wal", {}).get(x), disk, "B")
    add("lab logs", lambda s: s["logs"], disk, "B")
    return out


def retention_cap(name: str, samples: list[dict]) -> float | None:
    """What a retention rule bounds a resource to: the audit log keeps AUDIT_KEEP entries, the
    release store RELEASES_KEEP releases, at their measured average size; a member's pg_wal no
    more than the WAL between checkpoints, what standbys may need and what slots may hold
    (lab.config.PG_WAL_MB: their sum, above what PostgreSQL keeps at once)."""
    if name.endswith("/postgres WAL"):
        return sum(PG_WAL_MB.values()) * 2**20
    counts = samples[-1].get("counts", {})
    kind = {"etcd keys: audit": ("audit", AUDIT_KEEP), "etcd keys: releases": ("releases", RELEASES_KEEP)}.get(name)
    if kind is None or not counts.get(kind[0]):
        return None
    per_entry = samples[-1]["kept"][kind[0]] / counts[kind[0]]
    return per_entry * kind[1]


def bytes_per_revision(pts: list[tuple[float, float, float]], retention: float) -> float | None:
    """What one revision adds to etcd's database in use, from (t, in use, revision) samples: the
    rise from the first sample after a compaction (a drop) to one at least most of a retention
    later, over the revisions written meanwhile; the median over the run's cycles (243-244 bytes
    in soak runs 6 to 9)."""
    rises, start = [], None
    for a, b in zip(pts, pts[1:]):
        if b[1] < a[1] - COMPACTION_DROP:
            start = b
        elif start and b[0] - start[0] >= 0.8 * retention and b[2] > start[2]:
            rises.append((b[1] - start[1]) / (b[2] - start[2]))
            start = None
    return sorted(rises)[len(rises) // 2] if rises else None


def etcd_live(samples: list[dict], site: str, window: float, retention: float = ETCD_COMPACTION_S
              ) -> growth.Points | None:
    """A member's database in use less the revisions its compaction keeps, per window: what can
    grow with age (live keys). Periodic compaction with a retention under an hour compacts every
    retention to the revision of a retention before, so the member holds one to two retentions of
    revisions, 1.5 on average: the window's mean less 1.5 x retention x the window's revision rate
    x bytes per revision. Without this, the level follows the write rate: in run 9 a twenty-minute
    dip from 18.2 to 17.1 revisions a second, and back, fitted 0.2 MiB an hour (16% in 90 days)
    while etcd's key count stayed at 5,071-5,080."""
    pts = [(s["t"] - samples[0]["t"], m["db_in_use"], m["revision"]) for s in samples
           if (m := s["members"].get(site, {})).get("db_in_use")]
    per_revision = bytes_per_revision(pts, retention)
    if not per_revision:
        return None
    out = []
    for k, g in growth.whole_windows(pts, window).items():
        if g[-1][0] <= g[0][0]:
            continue  # one sample: no rate
        rate = (g[-1][2] - g[0][2]) / (g[-1][0] - g[0][0])
        out.append(((k + 0.5) * window, sum(p[1] for p in g) / len(g) - 1.5 * retention * rate * per_revision))
    return out


def descriptor_parts(name: str, samples: list[dict]) -> dict[str, growth.Points]:
    """A process's open files by kind (descriptors()), one series per kind, 0 where a sample of
    the process had none of it; empty for runs from before the kinds were sampled."""
    proc = name.removesuffix(" open files")
    t0 = samples[0]["t"]
    sampled = [s for s in samples if proc in s.get("fd_kinds", {})]
    kinds = sorted({k for s in sampled for k in s["fd_kinds"][proc]})
    return {k: [(s["t"] - t0, s["fd_kinds"][proc].get(k, 0)) for s in sampled] for k in kinds}


def descriptor_caps(name: str, samples: list[dict]) -> dict[str, float]:
    """The kinds of a process's open files that a setting bounds: the claims app's connections to
    PostgreSQL, by its pools' sizes (claims.store.most_connections) with the lab's default pool
    and a host per site. Nothing else is capped: the connections a process's clients hold
    follow its clients, a door's idle connections are bounded only per upstream (512), and
    a connection its peer hung up on (close-wait) is what a leak looks like."""
    if name.endswith("/app open files"):
        return {"tcp to postgres": most_connections(Settings.pool_size, len(samples[0]["members"]))}
    return {}


def project(samples: list[dict], window: float = 600, limits: dict[str, int] | None = None) -> list[dict]:
    rows = []
    for name, (pts, limit, unit) in series(samples, limits).items():
        fit, span = fit_of(name, samples, window)
        parts = descriptor_parts(name, samples) if name.endswith(" open files") else {}
        live = etcd_live(samples, name.split()[1], window) if name.endswith(" db in use") else None
        if parts:
            row = growth.project_parts(parts, limit, fit, span, DAYS * 86400, caps=descriptor_caps(name, samples))
        elif live:
            row = {**growth.project(pts, limit, "every", None, DAYS * 86400, fitted=live),
                   "fit": "mean less compaction's history", "window_s": window}
        else:
            row = growth.project(pts, limit, fit, span, DAYS * 86400, cap=retention_cap(name, samples))
        rows.append({"resource": name, "unit": unit, **row})
    return sorted(rows, key=lambda r: -r["share_of_limit"])


def failover(label: str) -> dict:
    sc = Scenario(name=f"soak: power cut of the primary's site ({label})", clients=4,
                  steps=[FaultStep(fault="power-cut", site="primary")])
    def progress(message: str) -> None:
        # The fault's own time, to set each cut beside the lab's logs (run 10's slow cut had none).
        if message.startswith("fault: "):
            message += f" (at {datetime.now(timezone.utc):%H:%M:%S.%f} UTC)"
        print(f"    {message}", flush=True)
    rep = runner.run(sc, ROOT / "reports" / "soak" / label, progress=progress)
    fault = next((e for e in rep.get("events", []) if e["kind"] == "fault"), {})  # the runner's own record
    return {"write_rto_s": rep["write_rto_s"], "max_write_gap_s": rep["max_write_gap_s"],
            "acked": rep["acked_writes"], "lost": rep["acked_lost"], "verdict": rep["verdict"],
            "site": fault.get("site"), "fault_at": fault.get("wall")}


class Operator(threading.Thread):
    """An operator at work: status and audit reads every second, and a release + deploy every
    five minutes (far more often than a real estate deploys; enough to exercise the release store
    and the audit log without projecting a deploy every ten seconds for 90 days)."""

    def __init__(self, consoles: dict[str, str], token: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.consoles, self.token, self.stop = consoles, token, stop

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {self.token}"}) as c:
            while not self.stop.is_set():
                n += 1
                for site, url in self.consoles.items():
                    try:
                        c.get(url + "/api/status")
                        c.get(url + "/api/audit?limit=20")
                        if n % 300 == 0:
                            c.post(url + "/api/actions/release", json={"version": f"soak-{site}-{n}"})
                            c.post(url + "/api/actions/deploy", json={"version": f"soak-{site}-{n}"})
                    except httpx.HTTPError:
                        pass
                self.stop.wait(1.0)


DESCRIPTOR_GROUPS = ("clients", "outbound", "other")


def descriptor_groups(kinds: dict[str, int]) -> dict[str, int]:
    """descriptors() summed three ways: connections from the process's own clients, connections
    it opened to other components, and everything else it holds (files, pipes, listeners, a
    connection its peer closed and it did not)."""
    out = dict.fromkeys(DESCRIPTOR_GROUPS, 0)
    for kind, n in kinds.items():
        out["clients" if kind.startswith("tcp from clients") else
            "outbound" if kind.startswith("tcp to ") and "close-wait" not in kind else "other"] += n
    return out


def plot(samples: list[dict], path: Path) -> None:
    """The samples as small multiples: etcd sizes, memory, open files, over time (SVG)."""
    t0 = samples[0]["t"]
    panels = [
        ("etcd database per member, on disk and in use (MiB)", {
            f"{m} {label}": [(s["t"] - t0, s["members"].get(m, {}).get(key, 0) / 2**20) for s in samples]
            for m in samples[0]["members"] for label, key in (("on disk", "db"), ("in use", "db_in_use"))}),
        ("etcd Go heap per member, in use and goal (MiB)", {
            f"{m} etcd {label}": [(s["t"] - t0, s.get("etcd_metrics", {}).get(m, {}).get(key, 0) / 2**20)
                                  for s in samples]
            for m in samples[0].get("etcd_metrics", {})
            for label, key in (("heap in use", "go_memstats_heap_inuse_bytes"), ("heap goal", "go_memstats_next_gc_bytes"))
            if key in samples[0]["etcd_metrics"][m]}),
        ("resident memory per process (MiB)", {n: [(s["t"] - t0, s["rss"].get(n, 0) / 2**20) for s in samples]
                                               for n in samples[0]["rss"]}),
        ("open files per process", {n: [(s["t"] - t0, s["fds"].get(n, 0)) for s in samples] for n in samples[0]["fds"]}),
        ("each app's open files, by kind", {
            f"{n.split('/')[0]}/{group}": [(s["t"] - t0, descriptor_groups(s.get("fd_kinds", {}).get(n, {}))[group])
                                            for s in samples]
            for n in samples[0].get("fd_kinds", {}) if n.endswith("/app") for group in DESCRIPTOR_GROUPS}),
    ]
    panels = [p for p in panels if p[1]]  # a run from before a series was sampled
    w, h, pad = 900, 220, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h * len(panels)}" '
             'font-family="sans-serif" font-size="11">']
    colours = ["#1b7f3b", "#b00020", "#1f5fbf", "#c77c00", "#6a3d9a", "#555", "#0a8f8f", "#9e2a7e"]
    for k, (title, lines) in enumerate(panels):
        y0 = k * h
        xmax = max((p[0] for pts in lines.values() for p in pts), default=1) or 1
        ymax = max((p[1] for pts in lines.values() for p in pts), default=1) or 1
        # One colour per component (every site's etcd alike, and so on), named in a legend.
        groups = list(dict.fromkeys(n.split("/")[-1].split(" ")[0] for n in lines))
        colour_of = {g: colours[i % len(colours)] for i, g in enumerate(groups)}
        parts.append(f'<text x="{pad}" y="{y0 + 16}" font-weight="bold">{title} (max {ymax:.0f})</text>')
        x_legend = pad + 440
        for g in groups:
            parts.append(f'<rect x="{x_legend}" y="{y0 + 7}" width="10" height="10" fill="{colour_of[g]}"/>'
                         f'<text x="{x_legend + 14}" y="{y0 + 16}">{g}</text>')
            x_legend += 20 + 7 * len(g)
        parts.append(f'<rect x="{pad}" y="{y0 + 24}" width="{w - 2 * pad}" height="{h - 60}" fill="none" stroke="#ccc"/>')
        for name, pts in lines.items():
            coords = " ".join(f"{pad + (x / xmax) * (w - 2 * pad):.1f},{y0 + 24 + (h - 60) * (1 - y / ymax):.1f}"
                              for x, y in pts)
            group = name.split("/")[-1].split(" ")[0]
            parts.append(f'<polyline fill="none" stroke="{colour_of[group]}" stroke-width="1.2" '
                         f'points="{coords}"><title>{name}</title></polyline>')
        parts.append(f'<text x="{pad}" y="{y0 + h - 20}">0</text><text x="{w - pad - 60}" y="{y0 + h - 20}">'
                     f'{xmax / 60:.0f} min</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def human(v: float, unit: str) -> str:
    if unit == "B":
        return f"{v / 2**20:,.1f} MiB"
    return f"{v:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--interval", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=10, help="writes per second per client")
    ap.add_argument("--failovers", type=int, default=3,
                    help="power cuts of the primary's site at each end: one cut cannot tell a slower failover "
                         "from the tail a fresh lab has too (4 of 60 drills near 3 s)")
    ap.add_argument("--window", type=float, default=600, help="seconds per mean in the fit of saw-tooth series")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    ap.add_argument("--analyse", type=Path, metavar="SOAK_JSON",
                    help="no soak: fit, project and plot the samples of an earlier run again (its file is rewritten)")
    args = ap.parse_args()
    if args.analyse:
        result = json.loads(args.analyse.read_text())
        result["rows"] = project(compact(result["samples"]), args.window, result["machine"].get("limits"))
        result["bar_misses"] = bar(result["rows"], result["failover_start"], result["failover_end"])
        result["analysis"] = f"bench/soak.py --analyse {args.analyse.name} --window {args.window:g}"
        args.analyse.write_text(json.dumps(result, separators=(",", ":")))
        plot(result["samples"], args.analyse.with_suffix(".svg"))
        report(result["rows"], result["samples"], result["failover_start"], result["failover_end"],
               result.get("write_latency_s", []))
        return
    runner.heal_on_sigterm()  # a `kill` of the benchmark heals the fault it left, like Ctrl-C
    lab.down()
    lab.up(progress=lambda m: print("  lab:", m, flush=True))
    try:
        print(f"failover at the start, {args.failovers} power cuts:", flush=True)
        start_fo = [failover(f"start-{i + 1}") for i in range(args.failovers)]
        print("  ", start_fo, flush=True)
        st = runner.wait_healthy(180)
        home = lab_home()
        token = load_secrets(home).ops_token
        doors = {n: s["door"] for n, s in st["sites"].items()}
        consoles = {n: s["console"] for n, s in st["sites"].items()}
        seeded = asyncio.run(seed_retained(list(st["sites"])))
        print(f"  seeded the retained keys to their caps: {seeded}", flush=True)
        stop, history = threading.Event(), History()
        report_id = seed_report(next(iter(doors.values())))
        threads: list[threading.Thread] = [Writer(doors, history, stop, seed=i, rate=args.rate)
                                           for i in range(args.clients)]
        threads += [Reader(n, doors[n], report_id, history, stop, token=load_secrets(home).app_admin) for n in doors]
        threads.append(Operator(consoles, token, stop))
        soak_start = time.monotonic()
        for t in threads:
            t.start()
        procs = lab_processes(st)
        samples = []
        end = soak_start + args.minutes * 60
        print(f"soak: {args.minutes:g} min, {args.clients} writers at {args.rate:g}/s, readers, an operator; "
              f"sampling {len(procs)} processes every {args.interval:g} s", flush=True)
        try:
            while time.monotonic() < end:
                samples.append(sample(st, procs, home))
                s = samples[-1]
                print(f"  {len(samples):>4}  etcd db " + ", ".join(f"{m} {v['db'] / 2**20:.1f}/{v['db_in_use'] / 2**20:.1f} MiB"
                                                                 for m, v in s["members"].items()) +
                      "  etcd heap " + "/".join(f"{v.get('go_memstats_heap_inuse_bytes', 0) / 2**20:.0f}"
                                             for v in s["etcd_metrics"].values()) +
                      f" MiB  rss {sum(s['rss'].values()) / 2**20:.0f} MiB  fds {sum(s['fds'].values())}", flush=True)
                time.sleep(args.interval)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        acked = sum(1 for o in history.ops if o.kind == "write" and o.outcome == "ok")
        latency = growth.quantiles_per_window([(o.invoke - soak_start, o.complete - o.invoke) for o in history.ops
                                               if o.kind == "write" and o.outcome == "ok"], args.window)
        print("failover at the end:", flush=True)
        end_fo = [failover(f"end-{i + 1}") for i in range(args.failovers)]
        print("  ", end_fo, flush=True)
    finally:
        lab.down()
    limits = machine_limits()  # kept with the run: a re-reading must not take another day's free disk
    rows = project(samples, args.window, limits)
    result = {
        "command": f"bench/soak.py --minutes {args.minutes:g} --window {args.window:g}", "date": datetime.now(timezone.utc).isoformat(),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "limits": limits}, "minutes": args.minutes,
        "writes_acked_during_soak": acked, "write_latency_s": latency, "seeded": seeded, "failover_start": start_fo, "failover_end": end_fo,
        "rows": rows, "bar_misses": bar(rows, start_fo, end_fo), "samples": compact(samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, separators=(",", ":")))
    plot(samples, args.out / "soak.svg")
    report(rows, samples, start_fo, end_fo, latency)


def descriptor_changes(samples: list[dict]) -> dict[str, tuple[dict, dict]]:
    """process -> (its descriptors by kind in the first sample, in the last), for the processes
    whose composition changed: what moved when a total did."""
    first, last = samples[0].get("fd_kinds", {}), samples[-1].get("fd_kinds", {})
    return {n: (first[n], last[n]) for n in first if n in last and first[n] != last[n]}


def cuts(fo: dict | list[dict]) -> list[dict]:
    """The failovers at one end of a run: a list, or the one dict of runs before --failovers."""
    return fo if isinstance(fo, list) else [fo]


def bar(rows: list[dict], start_fo: dict | list[dict], end_fo: dict | list[dict]) -> list[str]:
    """What keeps the soak's bar from being met, empty if nothing: every resource within 10% of its
    limit in 90 days, no acknowledged write lost in any failover, and the end's failovers as fast
    as the start's (median at most AS_FAST times the start's)."""
    misses = [f"{r['resource']} {r['share_of_limit']:.1%} of its limit in {DAYS} days" for r in rows
              if r["verdict"] != "pass"]
    start, end = cuts(start_fo), cuts(end_fo)
    if lost := sum(f["lost"] for f in start + end):
        misses.append(f"{lost} acknowledged writes lost")
    before = statistics.median(f["write_rto_s"] for f in start)
    after = statistics.median(f["write_rto_s"] for f in end)
    if after > AS_FAST * before:
        misses.append(f"failover at the end {after:.3f} s (median), over {AS_FAST:g} x the start's {before:.3f} s")
    return misses


def report(rows: list[dict], samples: list[dict], start_fo: dict | list[dict], end_fo: dict | list[dict],
           latency: list[dict]) -> None:
    print(f"\n{'resource':<34} {'first':>12} {'last':>12} {'per hour':>12} {'in 90 days':>12} {'limit':>12}  share")
    for r in rows:
        print(f"{r['resource']:<34} {human(r['first'], r['unit']):>12} {human(r['last'], r['unit']):>12} "
              f"{human(r['per_hour'], r['unit']):>12} {human(r['at_90_days'], r['unit']):>12} "
              f"{human(r['limit'], r['unit']):>12}  {r['share_of_limit']:6.1%} {r['verdict']}")
    for site in samples[0].get("etcd_metrics", {}):
        first, last = samples[0]["etcd_metrics"][site], samples[-1]["etcd_metrics"].get(site, {})
        print(f"etcd {site}: " + ", ".join(f"{k.removeprefix('etcd_debugging_mvcc_')} {first.get(k, 0):,.0f} -> "
                                            f"{last.get(k, 0):,.0f}" for k in ETCD_METRICS if k in first))
    for r in rows:
        if r.get("growing_parts"):
            print(f"{r['resource']}, growing kinds: " + ", ".join(
                f"{k} {v:.1f} an hour" + (f" (stops at {r['capped_parts'][k]:g}, its setting)" if k in r["capped_parts"]
                                           else "") for k, v in r["growing_parts"].items()))
    growing = {r["resource"].removesuffix(" open files") for r in rows if r["resource"].endswith(" open files")
               and r["per_hour"] > 0}
    for name, (first, last) in descriptor_changes(samples).items():
        if name not in growing:
            continue
        print(f"{name} open files: " + ", ".join(f"{k} {first.get(k, 0)} -> {last.get(k, 0)}"
                                                  for k in sorted(set(first) | set(last))))
    if latency:
        print("write latency by window (ms, p50/p99): " + ", ".join(
            f"{w['from_s'] / 60:.0f} min {w['p50'] * 1000:.0f}/{w['p99'] * 1000:.0f}" for w in latency))
    for label, fo in (("start", cuts(start_fo)), ("end", cuts(end_fo))):
        rtos = sorted(f["write_rto_s"] for f in fo)
        print(f"failover at the {label}: " + ", ".join(f"{r} s" for r in rtos) +
              f" (median {statistics.median(rtos):.3f} s; lost {sum(f['lost'] for f in fo)})")
    misses = bar(rows, start_fo, end_fo)
    print("soak bar: " + ("met" if not misses else "NOT met: " + "; ".join(misses)))


if __name__ == "__main__":
    main()
