"""One read shared by every request that wants it while it runs or shortly after: the console's
status is anonymous, and each one costs four etcd reads through the agent's own client, the
one its views and its coordinator lease go through. A flood of status requests then costs etcd
one set of reads per `fresh` seconds, whatever the number of requests. Only the reads are shared:
the agent's own state goes into each answer as it is then."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable


class SharedRead:
    def __init__(self, fresh: float, clock: Callable[[], float] = time.monotonic):
        self.fresh, self.clock = fresh, clock
        self._task: asyncio.Future | None = None
        self._started = 0.0

    async def get(self, read: Callable[[], Awaitable[Any]]) -> Any:
        """The running read's answer, or the last one's if it began less than `fresh` seconds ago
        and succeeded; else a new read. A caller that gives up (its request cancelled) does not
        cancel the read the others wait for."""
        task, now = self._task, self.clock()
        # A read of another event loop (an app run again in a new one) is never joined.
        stale = task is None or task.get_loop() is not asyncio.get_running_loop() or (
            task.done() and (now - self._started >= self.fresh or task.cancelled() or task.exception() is not None))
        if stale:
            task = asyncio.ensure_future(read())
            task.add_done_callback(_retrieve)
            self._task, self._started = task, now
        return await asyncio.shield(task)

    def forget(self) -> None:
        """After a change this process made (an operator's action): the next request reads anew."""
        self._task = None


def _retrieve(task: asyncio.Future) -> None:
    # Every waiter may have gone: the exception is theirs, not the loop's to warn about.
    if not task.cancelled():
        task.exception()
