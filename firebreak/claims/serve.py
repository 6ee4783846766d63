"""Run the reference service: `python -m firebreak.claims.serve --bind ADDR:PORT` (settings in env)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from firebreak import logs
from firebreak.claims.app import Settings, create_app
from firebreak.fdlimit import raise_open_files_limit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True, help="ADDR:PORT")
    args = ap.parse_args()
    host, port = args.bind.rsplit(":", 1)
    settings = Settings.from_env()
    # The pool says so at every failed reconnection; during a failover that is noise, the
    # outcome of each write is what matters (and is logged by the app).
    logs.to_stdout(settings.site, quieter={"psycopg.pool": logging.ERROR})
    raise_open_files_limit()
    uvicorn.run(create_app(settings), host=host, port=int(port), log_level="warning", log_config=None,
                access_log=False, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
