"""With one site down, every ops action succeeds from each surviving site's console; without
an operator's token nothing changes, and every attempt is in the audit log."""

import os

import httpx
import pytest

from firebreak.lab import lab
from firebreak.lab.state import lab_home, load_secrets
from tests.lab.conftest import LAB_HOME, lab_cli, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ops_lab():
    os.environ["FIREBREAK_HOME"] = str(LAB_HOME)
    lab_cli("down", "--purge", timeout=60)
    r = lab_cli("up")
    assert r.returncode == 0, f"lab up failed:\n{r.stdout}\n{r.stderr}"
    try:
        yield
    finally:
        lab_cli("down", timeout=120)
        os.environ.pop("FIREBREAK_HOME", None)


def act(console, token, action, **body):
    return httpx.post(f"{console}/api/actions/{action}", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {token}"} if token else {})


def test_every_ops_action_from_every_surviving_site_with_one_site_down(ops_lab):
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    token = load_secrets(lab_home()).ops_token
    down = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "replica")  # keep the primary
    lab.power_off(down)
    survivors = [n for n in st["sites"] if n != down]
    wait_for(lambda: all(httpx.get(st["sites"][n]["console"] + "/api/status", timeout=3).json()["sites"][down]["dead"]
                         for n in survivors), 30, f"the survivors to agree {down} is dead")

    # unauthenticated and wrong-token requests change nothing and are audited
    c0 = st["sites"][survivors[0]]["console"]
    assert act(c0, None, "freeze").status_code == 401
    assert act(c0, "lab.wrong", "freeze").status_code == 401
    assert httpx.get(c0 + "/api/status", timeout=3).json()["frozen"] is False

    for i, site in enumerate(survivors):
        console = st["sites"][site]["console"]
        other = next(n for n in survivors if n != site)
        for action, body in (("freeze", {}), ("unfreeze", {}), ("release", {"version": f"v{i}"}),
                             ("deploy", {"version": f"v{i}"}), ("evacuate", {"site": other}),
                             ("restore", {"site": other})):
            r = act(console, token, action, **body)
            assert r.status_code == 200, (site, action, r.text)
        deployed = r = act(console, token, "deploy", version=f"v{i}").json()
        assert deployed["sites"][down].startswith("skipped") and all(deployed["sites"][n] == "ok" for n in survivors)
        for n in survivors:
            assert httpx.get(st["sites"][n]["app"] + "/version", timeout=3).json()["version"] == f"v{i}"
        # move the primary to the other survivor and back, from this site's console
        primary = lab.status()["primary"]
        target = next(n for n in survivors if n != primary)
        r = act(console, token, "switchover", to=target)
        assert r.status_code == 200, r.text
        wait_for(lambda: lab.status()["primary"] == target, 60, f"the primary to move to {target}")

    audit = httpx.get(c0 + "/api/audit?limit=1000", timeout=5).json()
    assert any(a["who"] == "anonymous" and a["outcome"].startswith("denied") for a in audit)
    assert {a["site"] for a in audit if a["outcome"] == "ok"} >= set(survivors)
    assert {a["action"] for a in audit if a["outcome"] == "ok"} >= {"freeze", "unfreeze", "release", "deploy",
                                                                     "evacuate", "restore", "switchover"}
    lab.power_on(down)
    wait_for(lambda: lab.status()["healthy"], 120, f"{down} to rejoin")


def test_the_console_page_shows_every_site(ops_lab):
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    page = httpx.get(st["sites"]["ansan"]["console"] + "/", timeout=5).text
    assert "Firebreak console" in page and all(n in page for n in st["sites"])
    assert "Sign in" in page and "/actions/switchover" not in page  # no actions before login
