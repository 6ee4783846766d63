"""Every agent loop runs in cycles, and no cycle can end its loop.

Patroni's HA loop calls run_cycle() inside a catch-all for the same reason: an agent that exits
on an unexpected value stops protecting every cluster, and under systemd it restarts into the
same value and exits again. So each cycle is guarded (the exception is logged with its
traceback, counted, and the loop carries on at its next tick), and each value read from etcd or
Patroni that does not parse is left out, logged once per key revision, and counted.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

from firebreak.control.failover import Ignored


class Cycles:
    def __init__(self, log: logging.Logger, count_error: Callable[[str], None] = lambda loop: None,
                 count_ignored: Callable[[str], None] = lambda kind: None):
        self.log = log
        self.count_error = count_error
        self.count_ignored = count_ignored
        self.errors: dict[str, int] = {}  # loop -> failed cycles, for the console
        self._told: dict[str, int] = {}   # key -> the revision already logged (bounded by the keys)

    @contextlib.contextmanager
    def guard(self, loop: str) -> Iterator[None]:
        """One cycle of `loop`. CancelledError is not an Exception: shutting down still works."""
        try:
            yield
        except Exception:
            self.failed(loop)

    def failed(self, loop: str) -> None:
        """Call inside an `except` block: logs the exception being handled, with its traceback."""
        self.errors[loop] = self.errors.get(loop, 0) + 1
        self.count_error(loop)
        self.log.exception("%s: a cycle failed (%d so far); carrying on at the next one", loop, self.errors[loop])

    def ignore(self, kind: str, found: Ignored) -> None:
        """A value that did not parse: counted every time it is read, logged once per revision."""
        self.count_ignored(kind)
        if self._told.get(found.key) != found.revision:
            self._told[found.key] = found.revision
            self.log.warning("ignoring %s (revision %d): %s", found.key, found.revision, found.reason)
