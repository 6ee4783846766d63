"""Real-process tests: each starts a whole lab (etcd, PostgreSQL under Patroni, apps) and
always takes it down again, whatever happened."""

import json
import os
import time
from contextlib import contextmanager

import pytest

from tests.conftest import ROOT, run_cli

LAB_HOME = ROOT / ".firebreak" / "test-lab"


def lab_cli(*args: str, timeout: float = 180):
    env_home = {"FIREBREAK_HOME": str(LAB_HOME)}
    old = {k: os.environ.get(k) for k in env_home}
    os.environ.update(env_home)
    try:
        return run_cli("lab", *args, timeout=timeout)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def status() -> dict:
    r = lab_cli("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@pytest.fixture
def lab_up(request):
    """A running lab for one test; args come from @pytest.mark.parametrize-free markers."""
    marker = request.node.get_closest_marker("lab_args")
    args = list(marker.args) if marker else []
    lab_cli("down", "--purge", timeout=60)
    r = lab_cli("up", *args)
    assert r.returncode == 0, f"lab up failed:\n{r.stdout}\n{r.stderr}"
    try:
        yield r
    finally:
        lab_cli("down", timeout=120)


@contextmanager
def module_lab(*up_args: str, timeout: float = 180):
    """A fresh lab (`lab up` with up_args) for the tests of one module, always taken down after."""
    os.environ["FIREBREAK_HOME"] = str(LAB_HOME)
    lab_cli("down", "--purge", timeout=60)
    r = lab_cli("up", *up_args, timeout=timeout)
    assert r.returncode == 0, f"lab up failed:\n{r.stdout}\n{r.stderr}"
    try:
        yield
    finally:
        lab_cli("down", timeout=120)
        os.environ.pop("FIREBREAK_HOME", None)


@pytest.fixture(scope="module")
def running_lab():
    """A lab with agents for every test of one module; the tests leave it healthy for the next."""
    with module_lab():
        yield
