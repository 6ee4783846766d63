"""The etcd cut benchmark's table: a run is back when its slowest member takes writes."""

from bench.etcd_cut import PATIENCE, table


def _row(setting: str, hold: float, *back: float | None) -> dict:
    return {"setting": setting, "hold_s": hold, "back_s": {f"m{i + 1}": v for i, v in enumerate(back)}}


def test_a_cell_is_the_range_over_runs_of_the_slowest_member():
    rows = [_row("default", 60.0, 48.26, 48.44, 48.26), _row("default", 60.0, 48.86, 48.88, 48.87)]
    # The fastest member of the first run (48.26) is not when that run was back.
    assert "| 60 s | 48.44–48.88 s |" in table(rows, ["default"], [60.0])


def test_one_run_gives_one_number_and_a_member_never_back_says_never():
    rows = [_row("rto-max-1000", 10.0, 0.47, 0.48, 0.47), _row("default", 10.0, 4.5, None, 4.4)]
    text = table(rows, ["rto-max-1000", "default", "retries2-5"], [10.0])
    assert f"| 10 s | 0.48 s | never ({PATIENCE:.0f} s) | – |" in text
