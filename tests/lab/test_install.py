"""`lab up` from a plain, non-editable install in a fresh venv, used from outside the checkout
(the packaged files themselves: tests/cli/test_installed_package.py)."""

import json
import os

import pytest

from tests.installed import installed, run  # noqa: F401 (installed: the fixture)

pytestmark = pytest.mark.lab


def test_lab_up_from_the_installed_package(installed):
    where, fb = installed
    env = dict(os.environ, FIREBREAK_HOME=str(where / "lab"))
    up = run([str(fb), "lab", "up", "--no-agents"], cwd=where, env=env, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        st = json.loads(run([str(fb), "lab", "status", "--format", "json"], cwd=where, env=env).stdout)
        assert st["primary"] is not None and st["topology"]
    finally:
        run([str(fb), "lab", "down", "--purge"], cwd=where, env=env, timeout=180)
