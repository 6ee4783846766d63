"""Where the review console gets its policy and its outage ledger: the policy file (reloaded
when it changes), a ledger file, and the outages the site agents recorded in etcd, which
survive the loss of any one site."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from firebreak.claims.ledger import DEFAULT_MAX_OPEN_HOURS, LedgerRead, Outage, read_entries, read_ledger
from firebreak.claims.policy import Policy, load_policy
from firebreak.errors import FirebreakError

log = logging.getLogger("firebreak.review")


class PolicySource:
    """The policy in use, reloaded when its file changes. Intake asks for it with every report, so
    the file is looked at no more than once every CHECK_EVERY seconds (a stat per report was 1.9%
    of an app's CPU under intake): an edit takes effect within that."""

    CHECK_EVERY = 1.0

    def __init__(self, path: str, clock=time.monotonic):
        self.path = Path(path)
        self.policy: Policy = load_policy(self.path)  # a bad policy at start is the operator's to fix now
        self.mtime = self.path.stat().st_mtime
        self.clock, self.checked = clock, clock()

    def __call__(self) -> Policy:
        now = self.clock()
        if now - self.checked < self.CHECK_EVERY:
            return self.policy
        self.checked = now
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self.mtime:
                self.policy, self.mtime = load_policy(self.path), mtime
                log.info("policy %s reloaded", self.path)
        except (OSError, FirebreakError) as e:
            log.error("policy %s not reloaded, keeping the one in use: %s", self.path, e)
        return self.policy


def outages_from_etcd(entries: list[dict], now: float) -> list[Outage]:
    """The agents' ledger entries (site outages, open ones still running) as outages of every
    service: a site that lost power took every service it served with it."""
    out = []
    for e in entries:
        try:
            start = float(e["start"])
            end = float(e["end"]) if e.get("end") is not None else now
        except (KeyError, TypeError, ValueError):
            continue
        if end > start:
            out.append(Outage(str(e.get("service") or "*"), start, end, e.get("site"), e.get("source", "agent")))
    return out


class OutageSource:
    """The ledger as the app reads it: a file, and the entries the agents keep in etcd (any
    member: it survives the loss of any site), re-read at most every TTL seconds. What it
    believes follows ledger.read_entries: drills left out, an entry open longer than the
    policy's max_open_hours flagged and not believed."""

    TTL = 2.0

    def __init__(self, settings: Any, policy: PolicySource | None = None):
        self.file = settings.ledger
        self.endpoints = list(settings.etcd)
        self.access_file = settings.etcd_access
        self.prefix = settings.ledger_prefix
        self.policy = policy
        self.cached: tuple[float, LedgerRead, dict[str, dict], str] | None = None
        self.etcd: Any = None  # one client for the app's life, made on first use

    async def __call__(self) -> tuple[list[Outage], str]:
        read, _, note = await self.ledger()
        return read.outages, note

    async def ledger(self) -> tuple[LedgerRead, dict[str, dict], str]:
        """What the ledger believes, its raw entries by key (the agents' own words), and a note
        saying where it came from and what was left out."""
        now = time.time()
        if self.cached and now - self.cached[0] < self.TTL:
            return self.cached[1], self.cached[2], self.cached[3]
        max_open = getattr(self.policy(), "max_open_hours", DEFAULT_MAX_OPEN_HOURS) if self.policy \
            else DEFAULT_MAX_OPEN_HOURS
        reads: list[LedgerRead] = []
        raw: dict[str, dict] = {}
        notes = []
        if self.file:
            try:
                reads.append(read_ledger(self.file, now, max_open))
                notes.append(f"ledger file {Path(self.file).name}")
            except FirebreakError as e:
                notes.append(f"ledger file unreadable: {e}")
        if self.endpoints:
            from firebreak.control.etcd import OPEN, Etcd, EtcdAccess, EtcdError
            try:
                if self.etcd is None:
                    access = EtcdAccess.from_file(self.access_file) if self.access_file else OPEN
                    self.etcd = Etcd(self.endpoints, timeout=1.0, access=access)
                entries = [(kv.key, _json_or_none(kv)) for kv in await self.etcd.get_prefix(self.prefix)]
                raw.update((k, v) for k, v in entries if isinstance(v, dict))
                reads.append(read_entries(entries, now, max_open))
                notes.append(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} recorded by the site agents")
            except (EtcdError, ValueError) as e:
                notes.append(f"agents' ledger unavailable ({e}); verified against the file only")
        read = LedgerRead([o for r in reads for o in r.outages], [f for r in reads for f in r.flagged],
                          sum(r.drills for r in reads))
        notes += read.notes()
        note = "Outage ledger: " + ("; ".join(notes) if notes else "none configured: every report is outside-outage")
        self.cached = (now, read, raw, note)
        return read, raw, note


def _json_or_none(kv: Any) -> Any:
    try:
        return kv.json()
    except ValueError:
        return None


class CreditSource:
    """Accounts credited and the total, per incident, from the credit batches in a directory
    (`firebreak claims credit --out DIR`), re-read when the batches change, at most every TTL
    seconds. For the public record; the batches are the payment systems' files, read only."""

    TTL = 30.0

    def __init__(self, directory: str):
        self.directory = Path(directory) if directory else None
        self.cached: tuple[float, tuple, dict[int, tuple[int, int]]] = (float("-inf"), (), {})

    def _files(self) -> tuple:
        assert self.directory is not None
        from firebreak.claims.credit import batch_files
        return tuple((p.name, p.stat().st_mtime) for p in batch_files(self.directory))

    def _read(self) -> dict[int, tuple[int, int]]:
        import polars as pl

        from firebreak.claims.credit import read_paid
        assert self.directory is not None
        lines, _ = read_paid(self.directory)
        if lines is None:
            return {}
        per = lines.group_by("incident").agg(pl.col("account").n_unique().alias("n"),
                                             pl.col("amount").fill_null(0).sum().alias("total"))
        return {int(r["incident"]): (int(r["n"]), int(r["total"])) for r in per.iter_rows(named=True)}

    async def __call__(self) -> dict[int, tuple[int, int]]:
        if self.directory is None:
            return {}
        now = time.monotonic()
        at, files, credits = self.cached
        if now - at < self.TTL:
            return credits
        try:
            current = await asyncio.to_thread(self._files)
            if current != files:
                credits = await asyncio.to_thread(self._read)
        except (OSError, ImportError, FirebreakError) as e:
            log.error("credit batches in %s not read (the status page shows none): %s", self.directory, e)
            current, credits = files, {}
        self.cached = (now, current, credits)
        return credits
