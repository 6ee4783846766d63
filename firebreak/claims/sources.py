"""Where the review console gets its policy and its outage ledger: the policy file (reloaded
when it changes), a ledger file, and the outages the site agents recorded in etcd, which
survive the loss of any one site."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from firebreak.claims.ledger import Outage, load_ledger
from firebreak.claims.policy import Policy, load_policy
from firebreak.errors import FirebreakError

log = logging.getLogger("firebreak.review")


class PolicySource:
    def __init__(self, path: str):
        self.path = Path(path)
        self.policy: Policy = load_policy(self.path)  # a bad policy at start is the operator's to fix now
        self.mtime = self.path.stat().st_mtime

    def __call__(self) -> Policy:
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
    TTL = 2.0

    def __init__(self, settings: Any):
        self.file = settings.ledger
        self.endpoints = list(settings.etcd)
        self.access_file = settings.etcd_access
        self.prefix = settings.ledger_prefix
        self.cached: tuple[float, list[Outage], str] | None = None
        self.etcd: Any = None  # one client for the app's life, made on first use

    async def __call__(self) -> tuple[list[Outage], str]:
        now = time.time()
        if self.cached and now - self.cached[0] < self.TTL:
            return self.cached[1], self.cached[2]
        outages: list[Outage] = []
        notes = []
        if self.file:
            try:
                outages += load_ledger(self.file)
                notes.append(f"ledger file {Path(self.file).name}")
            except FirebreakError as e:
                notes.append(f"ledger file unreadable: {e}")
        if self.endpoints:
            from firebreak.control.etcd import OPEN, Etcd, EtcdAccess, EtcdError
            try:
                if self.etcd is None:
                    access = EtcdAccess.from_file(self.access_file) if self.access_file else OPEN
                    self.etcd = Etcd(self.endpoints, timeout=1.0, access=access)
                entries = [kv.json() for kv in await self.etcd.get_prefix(self.prefix)]
                outages += outages_from_etcd(entries, now)
                notes.append(f"{len(entries)} outage(s) recorded by the site agents")
            except (EtcdError, ValueError) as e:
                notes.append(f"agents' ledger unavailable ({e}); verified against the file only")
        note = "Outage ledger: " + ("; ".join(notes) if notes else "none configured: every report is outside-outage")
        self.cached = (now, outages, note)
        return outages, note
