"""A server's limit on open files: raised at start to all the system allows it."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("firebreak.fdlimit")


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files to its hard limit, as Go's runtime does for
    etcd, Caddy and every Go program (since Go 1.19). The soft default, 1024 under systemd, is
    kept for programs that still use select(); these servers use epoll. It is too low for an
    app behind doors: each door keeps up to 512 idle connections to each app (control/door.py),
    and in an evacuation every door sends to the same apps, so three doors could hold 1,536
    connections to one app, and past 1,024 it could no longer accept one or reach its database.
    Returns the soft limit (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:  # a sandbox may forbid it; the soft limit stays
        log.warning("open files: could not raise the limit from %d to %d: %s", soft, hard, e)
        return soft, soft
    return soft, hard
