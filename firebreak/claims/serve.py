"""Run the reference service: `python -m firebreak.claims.serve --bind ADDR:PORT` (settings in env).

With FIREBREAK_ADMIN_BIND=ADDR:PORT a second listener serves the admin routes (the agent's hooks,
/metrics, /docs, /openapi.json) there, and the public listener refuses them (404, counted): bind
it to an address the public door does not forward to (loopback, or the site's private network).
Both run in one process and one event loop, over one store."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from contextlib import nullcontext

import uvicorn

from firebreak import logs
from firebreak.claims.app import Settings, build
from firebreak.claims.one_write import OneWriteProtocol
from firebreak.errors import FirebreakError
from firebreak.fdlimit import raise_open_files_limit
from firebreak.keepalive import APP_IDLE_S


# Python's own event loop, never uvloop: under uvloop the lab's apps died of SIGABRT a few times
# an hour of faults (2026-12-04, 4 of 6 runs of the gray tests), inside the loop's C code with no
# Python frame and nothing in the log: libuv abort()s when epoll_ctl fails on a descriptor closed
# while registered (libuv#5130), which a connection hung up on mid-query can be. One site's app
# gone for good is the outage this service exists to prevent; the selector loop raises instead.
LOOP = "asyncio"


class Listener(uvicorn.Server):
    """A uvicorn server that leaves signals to main(): two servers capturing SIGTERM in turn would
    each restore the other's handler, and only one would hear it."""

    def capture_signals(self):  # type: ignore[override]
        return nullcontext()


def split_bind(value: str, what: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise FirebreakError(f"{what} {value!r}: expected ADDR:PORT, e.g. 127.0.0.1:18081")
    return host, int(port)


async def serve(servers: list[Listener]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for s in servers:
            s.force_exit = s.should_exit  # a second signal: do not wait for open connections
            s.should_exit = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(s.serve() for s in servers))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True, help="ADDR:PORT")
    args = ap.parse_args()
    try:
        settings = Settings.from_env()
    except FirebreakError as e:
        print(f"firebreak claims: {e}", file=sys.stderr)
        sys.exit(2)
    # The pool says so at every failed reconnection; during a failover that is noise, the
    # outcome of each write is what matters (and is logged by the app).
    logs.to_stdout(settings.site, quieter={"psycopg.pool": logging.ERROR})
    try:
        host, port = split_bind(args.bind, "--bind")
        admin_at = split_bind(settings.admin_bind, "FIREBREAK_ADMIN_BIND") if settings.admin_bind else None
        apps = build(settings)
    except FirebreakError as e:
        print(f"firebreak claims: {e}", file=sys.stderr)
        sys.exit(2)
    raise_open_files_limit()
    common = {"log_level": "warning", "log_config": None, "access_log": False, "timeout_keep_alive": APP_IDLE_S,
              "loop": LOOP, "http": OneWriteProtocol}
    servers = [Listener(uvicorn.Config(apps.public, host=host, port=port, **common))]
    if apps.admin is not None and admin_at is not None:
        servers.append(Listener(uvicorn.Config(apps.admin, host=admin_at[0], port=admin_at[1], lifespan="off",
                                               **common)))
    with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
        runner.run(serve(servers))


if __name__ == "__main__":
    main()
