#!/usr/bin/env bash
# Re-resolve the lock files after a change to pyproject.toml's dependencies:
#   requirements/<role>.lock, exact versions with sha256 hashes, for Python 3.11 on Linux.
# `make setup` installs from requirements/dev.lock; docs/DEPLOY.md installs a role's lock on a host.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || { .venv/bin/python -m pip install -q uv && UV=.venv/bin/uv; }
for role in core agent claims lab dev; do
    extra=(); [ "$role" = core ] || extra=(--extra "$role")
    "$UV" pip compile pyproject.toml "${extra[@]}" --generate-hashes --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --no-header --quiet -o "requirements/$role.lock"
    echo "requirements/$role.lock: $(grep -c '^[a-z0-9]' "requirements/$role.lock") packages"
done
