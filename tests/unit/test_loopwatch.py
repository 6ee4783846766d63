"""The event-loop watch: its decision as a table, and the shell against a real blocked loop."""

import asyncio
import logging
import time

import pytest

from firebreak.loopwatch import LoopWatch, Report, Watch, step


@pytest.mark.parametrize("watch, beat, now, after, report", [
    (Watch(), 10.0, 10.3, Watch(), None),                          # turning: nothing to say
    (Watch(), 10.0, 10.5, Watch(), None),                          # at the threshold, not past it
    (Watch(), 10.0, 10.7, Watch(10.0), Report(0.7, ended=False)),  # past it: report, with the stack
    (Watch(10.0), 10.0, 12.0, Watch(10.0), None),                  # still blocked: said once only
    (Watch(10.0), 13.5, 13.6, Watch(), Report(3.5, ended=True)),   # turned again: how long it lasted
])
def test_a_stall_is_reported_once_when_it_passes_the_threshold_and_once_when_it_ends(watch, beat, now, after, report):
    got_watch, got = step(watch, beat, now, threshold=0.5)
    assert got_watch == after
    if report is None:
        assert got is None
    else:
        assert got is not None and got.ended == report.ended and got.lasted == pytest.approx(report.lasted)


def test_a_loop_blocked_by_a_synchronous_call_is_logged_with_that_call_and_measured(caplog):
    stalls: list[float] = []

    def blocking_call_under_test() -> None:
        # At least a second, and until the watch has said so: CI runs this at nice 19 beside the
        # lab tests, where the watch's thread may look later than the threshold.
        started = time.monotonic()
        while time.monotonic() - started < 1.0 or not any(
                "so far" in r.getMessage() for r in caplog.records if r.name == "firebreak.loop"):
            assert time.monotonic() - started < 10, "the watch never reported the blocked loop"
            time.sleep(0.05)

    async def main() -> None:
        watch = LoopWatch(on_stall=stalls.append, threshold=0.5, beat=0.05)
        watch.start()
        await asyncio.sleep(0.3)
        blocking_call_under_test()
        deadline = time.monotonic() + 10
        while not stalls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # turning again: the watch sees the end
        watch.stop()

    with caplog.at_level(logging.WARNING, logger="firebreak.loop"):
        asyncio.run(main())
    # A busy machine may add a stall of its own; the one under test is the one at least a second long.
    assert any(1.0 <= s < 10 for s in stalls), stalls
    said = [r.getMessage() for r in caplog.records if r.name == "firebreak.loop"]
    caught = [m for m in said if "so far" in m and "blocking_call_under_test" in m]
    assert caught, said
    assert any(m.startswith("event loop was blocked for") for m in said[said.index(caught[0]):]), said
