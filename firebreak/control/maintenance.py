"""Keeping etcd bounded for months: health of its storage, which member to defragment, and what
Firebreak's own keys may be pruned. Pure functions of data; the agent performs what they return.

etcd keeps every revision until compacted (each member runs with auto-compaction, see
lab/config.py and docs/DEPLOY.md) and never gives freed space back to the file system until
defragmented. A defragmentation blocks the member it runs on for a moment, so only one member is
defragmented at a time, never one whose site is under suspicion, and only when enough of its file
is free space to be worth it. At the backend quota etcd raises NOSPACE and refuses every write:
agents cannot vote and Patroni cannot renew its leader key, so the primary demotes. That is an
outage Firebreak itself would cause, hence the warnings well before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from firebreak.control.keys import prefix_end

# Warn when a member's database reaches this share of the backend quota.
WARN_FRACTION = 0.5
# Defragment a member when at least this much of its file is free pages, and at least MIN_FREE.
DEFRAG_FREE_FRACTION = 0.5
DEFRAG_MIN_FREE = 64 * 2**20
DEFRAG_EVERY_S = 600.0  # at most one defragmentation in the whole cluster per this many seconds


@dataclass(frozen=True)
class MemberStorage:
    name: str            # the member's name: its site
    db_size: int         # bytes on disk
    db_size_in_use: int  # bytes holding live data
    revision: int = 0


@dataclass(frozen=True)
class StorageHealth:
    alarms: tuple[str, ...]      # "NOSPACE on pangyo", "CORRUPT on ansan"
    warnings: tuple[str, ...]    # for /api/status and the console, each saying what to do
    worst_fraction: float        # the fullest member's db_size / quota

    @property
    def ok(self) -> bool:
        return not self.alarms and not self.warnings


def storage_health(members: Iterable[MemberStorage], alarms: Iterable[tuple[str, str]], quota: int) -> StorageHealth:
    """alarms: (member name, alarm type) pairs as etcd reports them (NOSPACE, CORRUPT)."""
    members = list(members)
    named = tuple(f"{kind} on {name}" for name, kind in alarms if kind and kind != "NONE")
    warnings = []
    for kind_on in named:
        if kind_on.startswith("NOSPACE"):
            warnings.append(f"etcd alarm {kind_on}: etcd refuses writes, so Patroni cannot renew its leader key. "
                            "Compact, defragment, then `etcdctl alarm disarm`")
        elif kind_on.startswith("CORRUPT"):
            warnings.append(f"etcd alarm {kind_on}: a member's data differs from the others; replace that "
                            "member from a healthy one")
    worst = 0.0
    for m in members:
        frac = m.db_size / quota if quota else 0.0
        worst = max(worst, frac)
        if frac >= WARN_FRACTION:
            warnings.append(f"etcd member {m.name} uses {m.db_size / 2**20:.0f} MiB, {frac:.0%} of its "
                            f"{quota / 2**20:.0f} MiB quota ({m.db_size_in_use / 2**20:.0f} MiB live): check "
                            "auto-compaction and defragment")
    return StorageHealth(named, tuple(warnings), round(worst, 4))


def defrag_target(members: Iterable[MemberStorage], suspect_sites: set[str], last_defrag: float,
                  now: float) -> str | None:
    """The one member to defragment now, or None. Never while any site is suspected (taking a
    member out for a moment with another site in doubt could cost etcd its quorum), never more
    than one per DEFRAG_EVERY_S, and only where the free share of the file is worth it."""
    if suspect_sites or now - last_defrag < DEFRAG_EVERY_S:
        return None
    best, best_free = None, 0
    for m in members:
        free = m.db_size - m.db_size_in_use
        if m.name in suspect_sites or free < DEFRAG_MIN_FREE or free < m.db_size * DEFRAG_FREE_FRACTION:
            continue
        if free > best_free:
            best, best_free = m.name, free
    return best


@dataclass(frozen=True)
class Prune:
    """Delete keys in [start, end) (etcd's range delete); `why` is logged."""

    start: str
    end: str
    why: str


def prune_oldest(prefix: str, keys: list[str], keep: int, what: str) -> Prune | None:
    """Keys under prefix sort newest first (audit-log/<newest first>-<site>, keys.newest_first):
    drop all but the first `keep`."""
    if len(keys) <= keep:
        return None
    first_dropped = sorted(keys)[keep]
    return Prune(first_dropped, prefix_end(prefix), f"{what}: kept the newest {keep} of {len(keys)}")


def ledger_expired(keys: Iterable[str], prefix: str, cutoff: float) -> list[str]:
    """Ledger keys (<start>-<site> or drill-<start>-<site>) whose outage started before cutoff."""
    out = []
    for key in keys:
        rest = key[len(prefix):].removeprefix("drill-")
        try:
            start = float(rest.split("-", 1)[0])
        except ValueError:
            continue  # not ours to judge
        if start < cutoff:
            out.append(key)
    return out


def releases_to_drop(stored: Mapping[str, int], keep: int, current: str | None) -> list[str]:
    """Release versions beyond the newest `keep`, never the current one. Newest by the revision
    each was last stored at (etcd's mod revision), not first: a version stored again is as new as
    any, and ordered by its first revision it was dropped by the next prune, under the deploy
    that followed it (a drill's operator reuses its versions' names: deploy answered 404)."""
    ordered = sorted(stored, key=lambda v: stored[v], reverse=True)
    return [v for v in ordered[keep:] if v != current]
