"""The soak's fits (bench/growth.py): each one reads growth into a growing series and none into a
bounded one of the shape it is for."""

import random

import pytest

from bench.growth import growth, per_window, project, project_parts, quantiles_per_window, robust_slope

HOUR = 3600.0


def every(seconds: float, value, step: float = 20.0):
    return [(t, value(t)) for t in (i * step for i in range(int(seconds / step)))]


def sawtooth(period: float, low: float, high: float):
    return lambda t: low + (high - low) * ((t % period) / period)


def wandering(seed: int, base: int, spread: int, dwell: float = 120.0):
    """An integer count that moves with the load: a level held for `dwell` seconds at a time,
    anywhere from base to base + spread (a pool following its clients' concurrency)."""
    rng = random.Random(seed)
    levels: dict[int, int] = {}
    return lambda t: levels.setdefault(int(t // dwell), base + rng.randint(0, spread))


@pytest.mark.parametrize("points, expected", [
    ([], 0.0),
    ([(0, 5)], 0.0),
    (every(HOUR, lambda t: 7), 0.0),
    (every(HOUR, lambda t: 100 + t / 10), 0.1),                       # a steady climb, its own rate
    (every(HOUR, lambda t: 30 + (1 if 1200 < t < 1300 else 0)), 0.0),  # one step up and back
    (every(HOUR, lambda t: 30 + (t > 3000)), 0.0),                    # one late step: not a trend
])
def test_robust_slope(points, expected):
    assert robust_slope(points) == pytest.approx(expected)


def test_per_window_drops_a_last_partial_window():
    pts = every(1300, lambda t: t)  # 65 samples: 30 + 30 in whole windows of 600 s, 5 in the last
    means = per_window(pts, 600, lambda vs: sum(vs) / len(vs))
    assert [t for t, _ in means] == [300, 900]
    assert means[0][1] == pytest.approx(290) and means[1][1] == pytest.approx(890)
    assert per_window(pts, 600, min) == [(300, 0), (900, 600)]


def test_a_sawtooth_through_means_of_its_own_cycle_is_flat_and_through_windows_that_cut_it_is_not():
    """etcd's memory between raft snapshots (every ~540 s in the soak) fitted through 600-second
    means: each mean covers a different part of a cycle, and that drift reads as growth."""
    pts = every(HOUR, sawtooth(540, 30e6, 40e6))
    assert growth(pts, "mean", 600) * HOUR == pytest.approx(0.67e6, rel=0.01)  # 0.67 MB an hour, from the phase alone
    assert growth(pts, "mean", 540) == 0
    climbing = [(t, v + 100 * t) for t, v in pts]          # the same saw-tooth on a steady climb
    assert growth(climbing, "mean", 540) == pytest.approx(100, rel=0.01)


def test_a_pool_that_follows_the_load_has_no_floor_growth_as_a_rule():
    """A count that wanders by 6 with the load, fitted over an hour: 0 for most runs, and never
    the wander itself each hour (50 runs)."""
    rates = sorted(growth([p for p in every(2 * HOUR, wandering(seed, base=27, spread=6)) if p[0] >= HOUR],
                          "floor", 600) * HOUR for seed in range(50))
    assert rates[len(rates) // 2] == 0 and sum(r == 0 for r in rates) >= 40 and rates[-1] < 6


@pytest.mark.parametrize("seed", range(5))
def test_a_leak_under_a_wandering_pool_lifts_the_floor_at_its_rate(seed):
    pool = wandering(seed, base=27, spread=6)
    pts = every(4 * HOUR, lambda t: pool(t) + int(t // 600))  # one descriptor never closed every 10 min
    assert growth(pts, "floor", 600) * HOUR == pytest.approx(6, abs=1.5)


def test_growth_never_projects_a_shrinking_series_below_flat_and_names_an_unknown_fit():
    assert growth(every(HOUR, lambda t: 1000 - t), "every") == 0.0
    with pytest.raises(ValueError, match="unknown fit 'median'"):
        growth(every(HOUR, lambda t: 1), "median", 600)


def test_project_fits_the_second_half_and_stops_at_a_retention_cap():
    warm_then_flat = every(2 * HOUR, lambda t: min(t, HOUR))  # warm-up for an hour, then flat
    row = project(warm_then_flat, limit=100_000, fit="every", window=None, horizon=90 * 86400)
    assert row["per_hour"] == 0 and row["at_90_days"] == HOUR and row["verdict"] == "pass"
    assert project(warm_then_flat, limit=30_000, fit="every", window=None, horizon=90 * 86400)["verdict"] == "FAIL"
    climbing = every(2 * HOUR, lambda t: t)
    assert project(climbing, limit=10_000, fit="every", window=None, horizon=90 * 86400)["verdict"] == "FAIL"
    capped = project(climbing, limit=1e9, fit="every", window=None, horizon=90 * 86400, cap=50_000)
    assert capped["at_90_days"] == 50_000 and capped["share_of_limit"] == pytest.approx(5e-5)


def test_kinds_that_follow_the_load_in_turn_lift_the_totals_floor_but_no_kinds_own():
    """Two pooled kinds, each 1 above its floor half of each ten minutes: low together for the
    first 80 minutes, in turn after it. No descriptor leaks, but the total's floor rises from 12
    to 13 when their phases part, and an hour's fit reads that as growth."""
    def in_turn(base: int, second_half: bool):
        return lambda t: base + (((t % 600) >= 300) == second_half if t >= 80 * 60 else (t % 600) < 300)
    parts = {"tcp to postgres": every(2 * HOUR, in_turn(4, False)),
             "tcp from clients of app": every(2 * HOUR, in_turn(8, True))}
    total = [(t, sum(pts[i][1] for pts in parts.values())) for i, (t, _) in enumerate(parts["tcp to postgres"])]
    assert growth([p for p in total if p[0] >= HOUR], "floor", 600) > 0
    row = project_parts(parts, limit=20_000, fit="floor", window=600, horizon=90 * 86400)
    assert row["per_hour"] == 0 and row["growing_parts"] == {}
    assert row["at_90_days"] == row["last"] == total[-1][1] and row["verdict"] == "pass"


def test_a_leak_of_one_kind_is_projected_whatever_the_others_do_and_a_pool_stops_at_its_size():
    hours, horizon = 2 * HOUR, 90 * 86400
    parts = {"tcp to postgres": every(hours, lambda t: 4 + int(t // 600)),   # a pool filling: one more each 10 min
             "tcp from clients of app": every(hours, wandering(1, base=8, spread=6)),
             "file": every(hours, lambda t: 4)}
    capped = project_parts(parts, limit=20_000, fit="floor", window=600, horizon=horizon, caps={"tcp to postgres": 64})
    assert capped["growing_parts"] == {"tcp to postgres": pytest.approx(6, abs=1)}
    assert capped["capped_parts"] == {"tcp to postgres": 64}
    assert capped["at_90_days"] <= 64 + 8 + 6 + 4 and capped["verdict"] == "pass"
    assert capped["first"] == sum(pts[0][1] for pts in parts.values())
    leaking = {**parts, "tcp from clients of app (close-wait)": every(hours, lambda t: int(t // 600))}
    row = project_parts(leaking, limit=20_000, fit="floor", window=600, horizon=horizon, caps={"tcp to postgres": 64})
    assert row["growing_parts"]["tcp from clients of app (close-wait)"] == pytest.approx(6, abs=1)
    assert row["at_90_days"] > 12_000 and row["verdict"] == "FAIL"
    uncapped = project_parts(parts, limit=20_000, fit="floor", window=600, horizon=horizon)
    assert uncapped["capped_parts"] == {} and uncapped["verdict"] == "FAIL"


def test_quantiles_per_window():
    pts = [(t, float(t % 100)) for t in range(0, 1200)]  # each window: 0..99 six times
    rows = quantiles_per_window(pts, 600)
    assert [r["from_s"] for r in rows] == [0, 600] and all(r["n"] == 600 for r in rows)
    assert rows[0]["p50"] == 50 and rows[0]["p99"] == 99
    assert quantiles_per_window([], 600) == []
