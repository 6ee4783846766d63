"""How fast a sampled resource grows, and where that takes it in 90 days: pure functions of the
samples, table-tested in tests/unit/test_growth.py; bench/soak.py samples and reports.

Three ways to fit, one per shape of series:
- "every": Theil-Sen through every sample; for series that only move with what they hold
  (resident memory, log files, kept keys).
- "mean": Theil-Sen through the mean of each whole cycle; for a saw-tooth (etcd's database
  between compactions, its memory between raft snapshots). A mean over a whole cycle is the same
  wherever it starts; a mean over a window that cuts cycles depends on which part of a cycle it
  covers, and the drift of that phase from window to window reads as growth (a flat 540-second
  saw-tooth through 600-second means: 0.67 MB an hour of a 10 MB swing). A steady climb has the
  same slope either way.
- "floor": Theil-Sen through the least value of each window; for what a process holds for its
  clients (open files: pooled connections, a door's idle connections, which follow the load's
  concurrency up and down). A descriptor that leaks is never closed, so a leak lifts the floor;
  the load lifts the peaks. Where the samples say what each descriptor is, each kind is fitted
  on its own and the projections summed (project_parts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Points = list[tuple[float, float]]
T = TypeVar("T", bound=tuple)
FITS = ("every", "mean", "floor")


def robust_slope(points: Points) -> float:
    """Theil-Sen: the median of the slopes between pairs of samples. Integer counts that move by
    one now and then give a least-squares slope that projects thousands in 90 days; the median of
    pairwise slopes is 0 for them, and still the true rate for a steady climb."""
    slopes = sorted((y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points)
                    for x2, y2 in points[i + 1:] if x2 > x1)
    return slopes[len(slopes) // 2] if slopes else 0.0


def _by_window(samples: Sequence[T], window: float) -> dict[int, list[T]]:
    groups: dict[int, list[T]] = {}
    for s in samples:  # each sample's time first
        groups.setdefault(int(s[0] // window), []).append(s)
    return dict(sorted(groups.items()))


def whole_windows(samples: Sequence[T], window: float) -> dict[int, list[T]]:
    """The samples (time first) of each `window` seconds from t = 0, by window number, leaving
    out a window with under half the samples of the fullest (the last, partial one), which would
    skew a fit."""
    groups = _by_window(samples, window)
    fullest = max((len(g) for g in groups.values()), default=0)
    return {k: g for k, g in groups.items() if len(g) * 2 >= fullest}


def per_window(points: Points, window: float, stat: Callable[[list[float]], float]) -> Points:
    """(middle of the window, stat of its values) for each whole `window` seconds from t = 0."""
    return [((k + 0.5) * window, stat([v for _, v in g])) for k, g in whole_windows(points, window).items()]


def growth(points: Points, fit: str, window: float | None = None) -> float:
    """Units per second, never below 0 (a shrinking resource is projected flat)."""
    if fit == "every" or not window:
        rate = robust_slope(points)
    elif fit == "mean":
        rate = robust_slope(per_window(points, window, lambda vs: sum(vs) / len(vs)))
    elif fit == "floor":
        rate = robust_slope(per_window(points, window, min))
    else:
        raise ValueError(f"unknown fit {fit!r}: one of {', '.join(FITS)}")
    return max(0.0, rate)


def project(points: Points, limit: float, fit: str, window: float | None, horizon: float,
            cap: float | None = None, fitted: Points | None = None) -> dict:
    """Fit the second half of `points` (the first is warm-up: caches filling, the first
    compactions) and project from the last sample `horizon` seconds ahead, no further than
    `cap` (what a retention rule bounds it to) if there is one. `fitted`, if given, is the part
    of the series that can grow with age, fitted in place of the whole: what remains when a part
    that follows the load alone is taken out."""
    half = [p for p in (fitted or points) if p[0] >= points[-1][0] / 2]
    rate = growth(half, fit, window)
    last = points[-1][1]
    at = last + rate * (horizon - points[-1][0])
    if cap is not None:
        at = min(at, max(cap, last))
    share = at / limit if limit else 0.0
    return {"first": points[0][1], "last": last, "per_hour": rate * 3600, "at_90_days": at, "limit": limit,
            "share_of_limit": share, "fit": fit if window else "every", "window_s": window,
            "verdict": "pass" if share <= 0.1 else "FAIL"}


def project_parts(parts: dict[str, Points], limit: float, fit: str, window: float | None, horizon: float,
                  caps: dict[str, float] | None = None) -> dict:
    """project() for a total that is the sum of parts that move independently: a process's open
    files by kind (connections to PostgreSQL, from its clients, to etcd; files, pipes). Each part
    is fitted and projected on its own, a part that a setting bounds stops at its bound (`caps`),
    and the total is their sum. A leak is of one kind and lifts that kind's floor. The floor of
    the total is another thing: it needs every load-following part low at the same moment, so it
    moves with how their ups and downs happen to line up; in soak run 8 an app's total floor per
    ten minutes went 27, 28, 29, 28, 28, 29 (1.5 an hour, 16% of its limit in 90 days) while no
    kind's floor rose."""
    caps = caps or {}
    each = {kind: project(pts, limit, fit, window, horizon, cap=caps.get(kind)) for kind, pts in parts.items() if pts}
    at = sum(r["at_90_days"] for r in each.values())
    share = at / limit if limit else 0.0
    return {"first": sum(r["first"] for r in each.values()), "last": sum(r["last"] for r in each.values()),
            "per_hour": sum(r["per_hour"] for r in each.values()), "at_90_days": at, "limit": limit,
            "share_of_limit": share, "fit": f"{fit if window else 'every'} per part", "window_s": window,
            "verdict": "pass" if share <= 0.1 else "FAIL",
            "growing_parts": {kind: r["per_hour"] for kind, r in each.items() if r["per_hour"] > 0},
            "capped_parts": {kind: caps[kind] for kind in each if kind in caps}}


def quantiles_per_window(points: Points, window: float, qs: tuple[float, ...] = (0.5, 0.99)) -> list[dict]:
    """For each `window` seconds from t = 0: how many values, and their quantiles (nearest rank).
    A soak's write latency, window by window: a store that slows as it fills shows here first."""
    out = []
    for k, g in _by_window(points, window).items():
        vs = sorted(v for _, v in g)
        out.append({"from_s": k * window, "n": len(vs),
                    **{f"p{round(q * 100)}": vs[min(len(vs) - 1, int(q * len(vs)))] for q in qs}})
    return out
