"""Each site's agent has its own etcd identity in a running lab: it may write its own view and
what the control plane needs, and etcd refuses it another site's view and what operators decide;
the consoles still perform operators' actions, as the operators' etcd user.

tests/web/test_etcd_roles.py asks the same of a single locked etcd without a lab; this asks the
lab's own cluster, with the files `lab status --json` lists and each agent's own config."""

import asyncio
import json

import httpx
import pytest
import yaml

from firebreak.control.etcd import Etcd, EtcdAccess, EtcdError
from firebreak.lab import lab
from firebreak.lab.state import lab_home, load_secrets
from tests.lab.conftest import wait_for

pytestmark = pytest.mark.lab


def _attempt(endpoints: list[str], who: EtcdAccess, key: str, same: bool = False) -> str:
    """Put a value at key as `who`; with `same`, the value it holds (nothing changes but the revision)."""
    async def go() -> str:
        etcd = Etcd(endpoints, timeout=3, access=who)
        try:
            held = await etcd.get(key) if same else None
            await etcd.put(key, held.value if held else json.dumps({"forged": True}))
            return "allowed"
        except EtcdError as e:
            return "denied" if "denied" in str(e) else f"error: {e}"
        finally:
            await etcd.close()
    return asyncio.run(go())


def test_an_agents_identity_writes_its_own_view_and_etcd_refuses_it_the_rest(running_lab):
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    locked = st["etcd_access"]
    sites = list(st["sites"])
    assert locked["agents"] == {s: f"agent-{s}" for s in sites}
    assert "agent" not in locked["roles"], "no identity shared by every site's agent"

    # Each agent's config names its own identity, and the operators' one for its console.
    for site in sites:
        cfg = yaml.safe_load((lab_home() / "sites" / site / "agent.yml").read_text())
        assert cfg["etcd_access"] == locked["roles"][f"agent-{site}"]["access_file"]
        assert cfg["etcd_ops_access"] == locked["roles"]["ops"]["access_file"]

    me, other = sites[0], sites[1]
    mine = EtcdAccess.from_file(locked["roles"][f"agent-{me}"]["access_file"])
    endpoints = st["etcd_endpoints"]
    got = {key: _attempt(endpoints, mine, key) for key in (
        "/firebreak/frozen", "/firebreak/operators/x", "/firebreak/drained/" + other,
        "/firebreak/releases/forged", "/firebreak/release/current", f"/firebreak/views/{other}")}
    assert got == {key: "denied" for key in got}
    # Its own view: allowed (written back as it is; its agent puts it under its lease again
    # within 200 ms).
    assert _attempt(endpoints, mine, f"/firebreak/views/{me}", same=True) == "allowed"


def test_consoles_still_act_for_operators_as_the_ops_identity(running_lab):
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    token = load_secrets(lab_home()).ops_token
    console = st["sites"][next(iter(st["sites"]))]["console"]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        r = httpx.post(f"{console}/api/actions/freeze", json={}, headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert httpx.get(f"{console}/api/status", timeout=5).json()["frozen"] is True
    finally:
        httpx.post(f"{console}/api/actions/unfreeze", json={}, headers=headers, timeout=30)
    assert httpx.get(f"{console}/api/status", timeout=5).json()["frozen"] is False
    entries = httpx.get(f"{console}/api/audit?limit=5", timeout=5).json()
    assert [e["action"] for e in entries[:2]] == ["unfreeze", "freeze"]
