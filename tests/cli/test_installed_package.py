"""A plain, non-editable install in a fresh venv, used from outside the checkout: the packaged
examples, policy and templates are found, and `check` and `claims price` work. (`lab up` from it:
tests/lab/test_install.py.)"""

import json

from tests.conftest import ROOT
from tests.installed import installed, run  # noqa: F401 (installed: the fixture)


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
