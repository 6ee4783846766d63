"""Run the reference service: `python -m firebreak.claims.serve --bind ADDR:PORT` (settings in env)."""

from __future__ import annotations

import argparse

import uvicorn

from firebreak.claims.app import Settings, create_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True, help="ADDR:PORT")
    args = ap.parse_args()
    host, port = args.bind.rsplit(":", 1)
    uvicorn.run(create_app(Settings.from_env()), host=host, port=int(port), log_level="warning",
                access_log=False, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
