"""A plain, non-editable install of this checkout in a fresh venv, for the tests that use
Firebreak as a user who installed it would.

Building it costs about half a minute (a venv, the locked dependencies, the package). scripts/test.sh
runs the lab tests and the others side by side and gives both the same directory in
FIREBREAK_TEST_INSTALL: whichever gets there first builds it, under a lock, and the other uses it,
so the lab tests' chain (the suite's critical path) does not wait for a second build. Without the
variable (pytest run by hand) each module builds its own and removes it after."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT

DONE = ".built"


def run(argv, cwd, env=None, timeout=300):
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def _build(where: Path) -> None:
    venv = where / "venv"
    base = os.path.realpath(sys.executable)
    steps = [[base, "-m", "venv", "--clear", str(venv)],
             [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--require-hashes", "-r",
              str(ROOT / "requirements/lab.lock")],
             [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)]]
    for argv in steps:
        r = run(argv, cwd=where, timeout=600)
        assert r.returncode == 0, f"{' '.join(argv)}:\n{r.stderr[-2000:]}"
    # As root the lab runs PostgreSQL as an unprivileged user, who must be able to run this
    # venv's interpreter: not under pytest's tmp_path, which is private to its owner.
    for root, _dirs, _files in os.walk(where):
        os.chmod(root, 0o755)
    (where / DONE).touch()


@contextmanager
def installed_package() -> Iterator[tuple[Path, Path]]:
    """(the directory, its `firebreak` executable)."""
    shared = os.environ.get("FIREBREAK_TEST_INSTALL")
    where = Path(shared) if shared else Path(tempfile.mkdtemp(prefix="firebreak-install-"))
    where.mkdir(parents=True, exist_ok=True)
    os.chmod(where, 0o755)
    with open(where / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other run waits here while this one builds
        if not (where / DONE).exists():
            _build(where)
    try:
        yield where, where / "venv" / "bin" / "firebreak"
    finally:
        if not shared:
            shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path]]:
    """The installed package for one module's tests (import this fixture into the module)."""
    with installed_package() as it:
        yield it
