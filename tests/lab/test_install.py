"""A plain, non-editable install in a fresh venv, used from outside the checkout: the packaged
examples, policy and templates are found, and `check`, `claims price` and `lab up` work."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.lab


def run(argv, cwd, env=None, timeout=300):
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def installed():
    # Not under pytest's tmp_path: that is private to root, and as root the lab runs PostgreSQL
    # as an unprivileged user who must be able to run this venv's interpreter.
    where = Path(tempfile.mkdtemp(prefix="firebreak-install-"))
    os.chmod(where, 0o755)
    venv = where / "venv"
    base = os.path.realpath(sys.executable)
    steps = [[base, "-m", "venv", str(venv)],
             [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--require-hashes", "-r",
              str(ROOT / "requirements/lab.lock")],
             [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)]]
    for argv in steps:
        r = run(argv, cwd=where, timeout=600)
        assert r.returncode == 0, f"{' '.join(argv)}:\n{r.stderr[-2000:]}"
    for root, dirs, _ in os.walk(where):
        os.chmod(root, 0o755)
    yield where, venv / "bin" / "firebreak"
    shutil.rmtree(where, ignore_errors=True)


def test_it_is_not_the_checkout(installed):
    where, fb = installed
    r = run([str(fb.parent / "python"), "-c", "import firebreak; print(firebreak.__file__)"], cwd=where)
    assert r.returncode == 0 and str(ROOT) not in r.stdout and "site-packages" in r.stdout


def test_check_and_claims_price_use_packaged_files(installed):
    where, fb = installed
    r = run([str(fb), "examples", "--format", "json"], cwd=where)
    files = json.loads(r.stdout)
    assert set(files) >= {"kakao-2022.yaml", "firebreak-lab.yaml", "kakao-2022-policy.yaml", "ledger-2022.yaml"}
    assert all("site-packages" in p for p in files.values())
    r = run([str(fb), "check", files["kakao-2022.yaml"], "--format", "html", "-o", str(where / "r.html")], cwd=where)
    assert r.returncode == 1 and "Readiness: kakao-2022" in (where / "r.html").read_text()  # the template shipped
    r = run([str(fb), "claims", "price", files["reports-sample.csv"], "--ledger", files["ledger-2022.yaml"]],
            cwd=where)
    assert r.returncode == 0, r.stderr
    assert "kakao-2022-policy.yaml (the one that ships with Firebreak" in r.stderr and "priced" in r.stdout


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
