"""Checkers over a recorded history and the final database contents. Pure functions.

Each returns figures and, where a property can be violated, the evidence: the keys of lost
writes, the overlapping primaries. A drill passes only when every check holds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from firebreak.drill.workload import Op


def acked(ops: Iterable[Op], kind: str = "write") -> list[Op]:
    """Acknowledged writes; kind "sql" for the ordinary database client's."""
    return [o for o in ops if o.kind == kind and o.outcome == "ok"]


def lost_writes(ops: Iterable[Op], stored_keys: set[str], kind: str = "write") -> list[str]:
    """Keys of writes that were acknowledged but are not in the database."""
    return sorted({o.key for o in acked(ops, kind)} - stored_keys)


def duplicates(stored_key_counts: Mapping[str, int]) -> list[str]:
    """Keys stored more than once: a retry created a second report."""
    return sorted(k for k, n in stored_key_counts.items() if n > 1)


STALL = 0.25   # a pause between acknowledgements longer than this is a stall, not the clients' pace
SETTLE = 1.0   # ... when it begins this soon after the fault


class Acks:
    """One kind's acknowledged writes, indexed once for the questions asked of every fault: a
    60-minute chaos drill asks them 63 times over 1.5 million writes, and answering each by
    sorting the whole history kept its judgment busy for minutes after the last heal."""

    def __init__(self, ops: Iterable[Op], kind: str = "write"):
        mine = sorted(((o.invoke, o.complete) for o in acked(ops, kind)))
        self.done = sorted(c for _, c in mine)
        self.invokes = [i for i, _ in mine]
        # first_done[i]: the earliest completion among the writes invoked at or after invokes[i]
        self.first_done = [0.0] * len(mine)
        low = float("inf")
        for i in range(len(mine) - 1, -1, -1):
            low = min(low, mine[i][1])
            self.first_done[i] = low

    def rto(self, fault_at: float, until: float | None = None) -> float | None:
        """write_rto's answer, in O(log n) and the writes of the settle second."""
        i = bisect_left(self.invokes, fault_at)
        if i == len(self.invokes) or (until is not None and self.first_done[i] > until):
            return None
        end = len(self.done) if until is None else bisect_right(self.done, until)
        rto = self.first_done[i] - fault_at
        a = bisect_left(self.done, fault_at)
        b = bisect_right(self.done, fault_at + SETTLE)
        for j in range(a, min(b, end - 1)):
            if self.done[j + 1] - self.done[j] > STALL:
                rto = max(rto, self.done[j + 1] - fault_at)
        if until is not None and a <= end - 1 < b and until - self.done[end - 1] > STALL:
            return None   # stalled in the settle second and still stalled when watching ended
        return rto


def completed_since(ops: list[Op], at: float, margin: float = 5.0) -> list[Op]:
    """The ops of a history that may have completed at or after `at`, for the questions a drill
    asks while it runs (has writing resumed since this fault?): a history is appended as ops
    complete, so they are its tail, and `margin` seconds cover appends that raced. Asked over the
    whole history ten times a second, each answer sorted every write so far, and late in an hour's
    drill the drill itself took a core from the lab it was judging."""
    i = len(ops)
    while i > 0 and ops[i - 1].complete >= at - margin:
        i -= 1
    return ops[i:]


def write_rto(ops: Iterable[Op], fault_at: float, kind: str = "write", until: float | None = None) -> float | None:
    """Seconds from the fault until writes flow again: the first acknowledgement of a write sent
    after it or, when writes stall in the first second after the fault, the end of that stall.
    A write acknowledged in the instant before a fault took hold (an isolation's rules landing, a
    synchronous standby not yet missed) is not writes flowing: losing the synchronous standby's
    site stalls every commit after it, and counting only the first write sent after the fault
    once reported that 3 s stall as 0.01 s. (Many faults over one history: Acks, built once.)

    `until`: when the writers stopped (the end of what was watched). Writes that stalled in the
    settle second and had not flowed again by then never resumed (None): without it, a stall that
    outlasted the history read as the write that slipped in before it (Patroni alone, whose
    writes never came back within a benchmark's hold, read 0.00 s)."""
    return Acks(ops, kind).rto(fault_at, until)


def max_write_gap(ops: Iterable[Op], start: float, end: float, kind: str = "write") -> float:
    """The longest time without any acknowledged write between start and end."""
    times = sorted(o.complete for o in acked(ops, kind) if start <= o.complete <= end)
    points = [start] + times + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def read_failures(ops: Iterable[Op], sites: Iterable[str] | None = None) -> dict[str, int]:
    out: dict[str, int] = {s: 0 for s in (sites or [])}
    for o in ops:
        if o.kind == "read" and (sites is None or o.site in out):
            out[o.site] = out.get(o.site, 0) + (o.outcome != "ok")
    return out


@dataclass(frozen=True)
class PrimaryEpoch:
    primary: str
    timeline: int
    first_ack: float
    last_ack: float
    acks: int


def primary_epochs(ops: Iterable[Op]) -> list[PrimaryEpoch]:
    spans: dict[tuple[str, int], list[float]] = defaultdict(list)
    for o in acked(ops):
        spans[(o.primary, o.timeline)].append(o.complete)
    return sorted((PrimaryEpoch(p, t, min(v), max(v), len(v)) for (p, t), v in spans.items()),
                  key=lambda e: e.first_ack)


def split_brain(ops: Iterable[Op]) -> list[tuple[PrimaryEpoch, PrimaryEpoch]]:
    """Pairs of different primaries that acknowledged writes in overlapping intervals."""
    epochs = primary_epochs(ops)
    bad = []
    for i, a in enumerate(epochs):
        for b in epochs[i + 1:]:
            if b.first_ack < a.last_ack:
                bad.append((a, b))
    return bad


def ops_actions(ops: Iterable[Op]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for o in ops:
        if o.kind == "ops":
            d = out.setdefault(o.site, {"tried": 0, "ok": 0})
            d["tried"] += 1
            d["ok"] += o.outcome == "ok"
    return out


def stored_counts(keys: Iterable[str]) -> Counter:
    return Counter(keys)
