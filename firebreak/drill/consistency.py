"""Do the replicas agree after the faults healed? Pure judgements over what the runner collected.

etcd: every member's hash of its key-value store (`hashkv`) at one common revision. Members that
report the same compaction revision must report the same hash; a difference means a member
diverged (etcd 3.5.0-3.5.2 could, when killed under load: the lab's power cut). Members at
different compaction revisions cannot be compared yet, and the runner asks again.

PostgreSQL: every member on the primary's timeline and every standby streaming, so the old
primary did rejoin as a replica of the new one rather than run on its own history.
"""

from __future__ import annotations

from typing import Iterable, Mapping


def etcd_problems(hashes: Mapping[str, tuple[int, int]], revision: int) -> list[str]:
    """hashes: member -> (hash, compact_revision) at `revision`. Empty when they agree."""
    problems = []
    by_compaction: dict[int, dict[str, int]] = {}
    for member, (h, compacted) in hashes.items():
        by_compaction.setdefault(compacted, {})[member] = h
    for compacted, group in sorted(by_compaction.items()):
        if len(set(group.values())) > 1:
            problems.append(f"etcd members disagree at revision {revision} (compacted at {compacted}): " +
                            ", ".join(f"{m} {h:#010x}" for m, h in sorted(group.items())))
    return problems


def comparable(hashes: Mapping[str, tuple[int, int]]) -> bool:
    """Whether every member reported the same compaction revision (so every hash is comparable)."""
    return len({c for _, c in hashes.values()}) <= 1


def postgres_problems(members: Iterable[Mapping]) -> list[str]:
    """members: Patroni's /cluster entries (name, role, state, timeline)."""
    members = list(members)
    leaders = [m for m in members if m.get("role") in ("leader", "standby_leader")]
    if len(leaders) != 1:
        return [f"PostgreSQL has {len(leaders)} primaries ({', '.join(m.get('name', '?') for m in leaders) or 'none'})"]
    timeline = leaders[0].get("timeline")
    problems = []
    for m in members:
        if m is leaders[0]:
            continue
        if m.get("state") != "streaming":
            problems.append(f"PostgreSQL member {m.get('name')} is {m.get('state')}, not streaming from the primary")
        elif m.get("timeline") != timeline:
            problems.append(f"PostgreSQL member {m.get('name')} is on timeline {m.get('timeline')}, the primary on "
                            f"{timeline}")
    return problems
