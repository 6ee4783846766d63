"""A watch on an asyncio event loop: when the loop stops turning for longer than a threshold, the
log says so with what the loop's thread was doing at that moment, and says how long it lasted
once the loop turns again; each stall is counted in the process's metrics.

Why: a process whose loop is blocked still looks alive from outside (the kernel completes TCP
handshakes for it) while every request, probe and timer in it waits. On the lab every site's app
stopped answering its door's health checks for one to eight seconds after some faults, and no log
said why. The watch runs on its own thread, so it sees a loop that cannot see itself.

The decision is `step`, a pure function of the last heartbeat and the time; the thread and the
heartbeat are the thin shell around it."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("firebreak.loop")

THRESHOLD = 0.5  # seconds without a heartbeat before a stall is reported
BEAT = 0.1       # seconds between heartbeats, and between the watch's looks
LOOP_STALL_BUCKETS = (0.75, 1, 2, 5, 10, 30)  # the metric's, in seconds (a stall is over THRESHOLD)


@dataclass(frozen=True)
class Watch:
    """What the watch knows: the heartbeat a reported stall began after, if one is reported."""
    stalled_after: float | None = None


@dataclass(frozen=True)
class Report:
    """A stall crossed the threshold (ended is None: capture the loop's stack now), or a reported
    stall ended after `lasted` seconds."""
    lasted: float
    ended: bool


def step(watch: Watch, beat: float, now: float, threshold: float = THRESHOLD) -> tuple[Watch, Report | None]:
    """One look. `beat` is the loop's latest heartbeat (monotonic), `now` the watch's time."""
    if watch.stalled_after is None:
        if now - beat > threshold:
            return Watch(stalled_after=beat), Report(lasted=now - beat, ended=False)
        return watch, None
    if beat > watch.stalled_after:  # the loop turned again
        return Watch(), Report(lasted=beat - watch.stalled_after, ended=True)
    return watch, None


def stack_of(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)"


class LoopWatch:
    """Start it from inside the loop it watches (`start()`); `stop()` ends the thread."""

    def __init__(self, on_stall: Callable[[float], None] | None = None, threshold: float = THRESHOLD,
                 beat: float = BEAT):
        self.on_stall = on_stall
        self.threshold = threshold
        self.interval = beat
        self.beat = time.monotonic()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def tick() -> None:
            self.beat = time.monotonic()
            self.handle = loop.call_later(self.interval, tick)

        tick()
        self.thread = threading.Thread(target=self._watch, args=(loop_thread,), name="loop-watch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.handle:
            self.handle.cancel()

    def _watch(self, loop_thread: int) -> None:
        watch = Watch()
        while not self.stopping.wait(self.interval):
            watch, report = step(watch, self.beat, time.monotonic(), self.threshold + self.interval)
            if report is None:
                continue
            if not report.ended:
                # The stack first, then the log: the handler's lock may be what the loop holds.
                stack = stack_of(loop_thread)
                log.warning("event loop blocked for %.2f s so far; its thread is at:\n%s", report.lasted, stack)
            else:
                log.warning("event loop was blocked for %.2f s", report.lasted)
                if self.on_stall:
                    self.on_stall(report.lasted)
