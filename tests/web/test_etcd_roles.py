"""A real etcd, locked by the lab's own code (lab/pki certificates, lab/access.prepare's users and
access files, lab/access.lock's roles from control/keys.py role_grants, the lab's TLS and signed
token flags), asked the questions of tests/unit/test_etcd_access.py's table: etcd itself, not our
reading of its rules, must refuse each write the table refuses and allow the others.

One member on a free loopback port in a temporary directory, no lab: it starts in about a second,
and is always stopped by its PID."""

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from firebreak.control import actions
from firebreak.control.actions import ActionIn, Context
from firebreak.control.auth import Operator
from firebreak.control.etcd import Etcd, EtcdAccess, EtcdError
from firebreak.control.keys import Keys, PatroniKeys
from firebreak.errors import Denied
from firebreak.lab import access, procs, runtime
from firebreak.lab.config import etcd_tls_argv
from firebreak.lab.layout import LabLayout, SiteLayout
from tests.unit.test_etcd_access import CASES, SITES
from tests.web.conftest import free_port


@pytest.fixture(scope="module")
def locked_etcd():
    """(layout, client URL) of one locked etcd member; every role of a three-site lab exists."""
    home = Path(tempfile.mkdtemp(prefix="firebreak-etcd-roles-"))
    sites = tuple(SiteLayout(name, i, "127.0.0.1", home / "sites" / name, None) for i, name in enumerate(SITES))
    layout = LabLayout(home, "loopback", sites, "etcd-roles-" + home.name)
    access.prepare(layout)
    member = sites[0]
    url, peer = f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}"
    proc = procs.spawn([runtime.etcd_binary(), "--name", member.name, "--data-dir", str(home / "data"),
                        "--listen-client-urls", url, "--advertise-client-urls", url,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", f"{member.name}={peer}", "--log-level", "warn", "--logger", "zap",
                        *etcd_tls_argv(layout, member)],
                       site=member.name, component="etcd", lab_id=layout.lab_id, log=home / "etcd.log")
    try:
        root = access.load(layout, access.ROOT)
        tls = EtcdAccess(root.ca, root.cert, root.key)  # no user: authentication is not on yet
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.post(url + "/v3/maintenance/status", json={}, verify=tls.ssl_context(),
                              timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("test etcd did not start:\n" + (home / "etcd.log").read_text())
            time.sleep(0.1)
        asyncio.run(access.lock(layout, ["firebreak"], endpoints=[url]))
        yield layout, url
    finally:
        procs.terminate([proc.pid], timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _run(layout: LabLayout, url: str, attempts):
    """Run `attempts(clients)` with one client per role (one login each), closing them all."""
    async def go():
        clients = {role: Etcd([url], timeout=3, access=access.load(layout, role)) for role in access.roles(layout)}
        try:
            return await attempts(clients)
        finally:
            for c in clients.values():
                await c.close()
    return asyncio.run(go())


async def _try(call) -> str:
    try:
        await call
        return "allowed"
    except EtcdError as e:
        return "denied" if "denied" in str(e) else f"error: {e}"


def test_etcd_itself_refuses_each_write_the_table_refuses_and_allows_the_others(locked_etcd):
    layout, url = locked_etcd

    async def attempts(clients):
        return [(role, key, write, await _try(clients[role].put(key, "x") if write else clients[role].get(key)))
                for role, key, write, _ in CASES]

    async def clean(clients):  # the table wrote "x" wherever it could
        for prefix in ("/firebreak/", "/service/"):
            await clients[access.ROOT].delete_range(prefix, prefix[:-1] + "0")
    got = _run(layout, url, attempts)
    _run(layout, url, clean)
    assert got == [(role, key, write, "allowed" if ok else "denied") for role, key, write, ok in CASES]


def test_what_the_agents_and_the_failover_do_in_transactions_and_leases(locked_etcd):
    """The writes as the agents make them: a view under a lease, the coordinator's election, a
    compare-and-delete of a dead leader's key; and the deletes operators' keys would need."""
    layout, url = locked_etcd
    keys, pk = Keys(), PatroniKeys("/service/firebreak")

    async def attempts(clients):
        root, pangyo = clients[access.ROOT], clients["agent-pangyo"]
        await root.put(pk.leader, "ansan")
        leader = await root.get(pk.leader)
        await root.put(keys.view("ansan"), "{}")
        other = await root.get(keys.view("ansan"))
        await root.put(keys.frozen, "{}")
        lease = await pangyo.grant(5)
        # A released leader's session with a key of its own still on it (Agent._end_session moves
        # the fenced member key off first, but the old primary may have rewritten it meanwhile),
        # and a lease holding an operator's key.
        session = await root.grant(30)
        await root.put(pk.member("siheung"), "{}", lease=session)
        other_lease = await root.grant(30)
        await root.put(keys.drained_site("siheung"), "{}", lease=other_lease)
        return {
            "own view, leased": await _try(pangyo.put(keys.view("pangyo"), "{}", lease=lease)),
            "coordinator election": await _try(pangyo.create(keys.coordinator, "pangyo", lease=lease)),
            "compare-and-delete the leader key": await _try(pangyo.cas_delete(pk.leader, leader.mod_revision)),
            "delete another site's view": await _try(pangyo.delete(keys.view("ansan"))),
            "compare-and-delete another site's view": await _try(pangyo.cas_delete(keys.view("ansan"),
                                                                                   other.mod_revision)),
            "unfreeze": await _try(pangyo.delete(keys.frozen)),
            "delete every view": await _try(pangyo.delete_range(keys.views, keys.views[:-1] + "0")),
            "ops: unfreeze": await _try(clients["ops"].delete(keys.frozen)),
            "revoke a Patroni member's session": await _try(pangyo.revoke(session)),
            "revoke a lease holding an operator's key": await _try(pangyo.revoke(other_lease)),
        }
    assert _run(layout, url, attempts) == {
        "own view, leased": "allowed", "coordinator election": "allowed",
        "compare-and-delete the leader key": "allowed",
        "delete another site's view": "denied", "compare-and-delete another site's view": "denied",
        "unfreeze": "denied", "delete every view": "denied", "ops: unfreeze": "allowed",
        "revoke a Patroni member's session": "allowed", "revoke a lease holding an operator's key": "denied"}


def _context(layout: LabLayout, reader: Etcd, ops: Etcd | None) -> Context:
    cfg = SimpleNamespace(keys=Keys(), sites={s: None for s in SITES})
    return Context(SimpleNamespace(cfg=cfg), reader, None, ops)


def test_the_console_writes_operators_keys_as_ops_and_without_that_identity_refuses(locked_etcd):
    layout, url = locked_etcd
    who = Operator("lab", "admin")

    async def attempts(clients):
        keys, reader = Keys(), clients["agent-pangyo"]
        out = {}
        ctx = _context(layout, reader, clients["ops"])
        out["freeze as ops"] = await actions.freeze(ctx, ActionIn(), who)
        out["frozen by"] = json.loads((await reader.get(keys.frozen)).value)["by"]
        out["release as ops"] = await actions.release(ctx, ActionIn(version="1.0"), who)
        out["unfreeze as ops"] = await actions.unfreeze(ctx, ActionIn(), who)
        try:
            await actions.freeze(_context(layout, reader, None), ActionIn(), who)
        except Denied as e:
            out["no ops identity"] = (e.status, "etcd_ops_access" in e.message)
        # An agent's identity given as the console's operators' one: etcd says no.
        out["agent as ops"] = await _try(actions.freeze(_context(layout, reader, reader), ActionIn(), who))
        out["still unfrozen"] = await reader.get(keys.frozen) is None
        return out
    assert _run(layout, url, attempts) == {
        "freeze as ops": {"frozen": True}, "frozen by": "lab", "release as ops": {"stored": "1.0"},
        "unfreeze as ops": {"frozen": False}, "no ops identity": (503, True), "agent as ops": "denied",
        "still unfrozen": True}


def test_a_sites_console_acts_for_operators_as_ops_and_refuses_without_that_identity(locked_etcd):
    """The lab's own agent config (lab/config.py agent_config): the site's agent user for the
    agent, the ops user for the console's writes. Served in-process, lifespan and all."""
    from firebreak.control.agent import Agent
    from firebreak.control.auth import add_operator
    from firebreak.control.config import AgentConfig
    from firebreak.control.console import create_console
    from firebreak.lab.config import Secrets, agent_config

    layout, url = locked_etcd
    raw = {**agent_config(layout, layout.site("pangyo"), Secrets("s", "r", "a", "t")), "etcd": [url]}
    assert raw["etcd_access"] == str(layout.access_file("agent-pangyo"))
    assert raw["etcd_ops_access"] == str(layout.access_file("ops"))

    async def operator() -> str:
        etcd = Etcd([url], timeout=3, access=access.load(layout, "ops"))
        try:
            return await add_operator(etcd, Keys(), "alice", "operator")
        finally:
            await etcd.close()
    bearer = {"authorization": f"Bearer {asyncio.run(operator())}"}

    def act(cfg: AgentConfig, action: str) -> tuple[int, dict, list]:
        async def go():
            agent = Agent(cfg)
            # A client that waits, not the agent's fail-fast 0.5 s: CI runs this at nice 19 beside
            # the lab tests, etcd too. What is tested is who may act, not how fast.
            agent.etcd = Etcd(cfg.etcd, timeout=5, patience=5, access=cfg.access())
            app = create_console(agent)
            try:
                async with app.router.lifespan_context(app):  # the console's clients close at its end
                    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                 base_url="http://console") as console:
                        r = await console.post(f"/api/actions/{action}", json={}, headers=bearer)
                        audit = (await console.get("/api/audit")).json()
                        frozen = (await console.get("/api/status")).json()["frozen"]
                return r.status_code, {**r.json(), "frozen after": frozen}, audit
            finally:
                await agent.close()
        return asyncio.run(go())

    status, doc, audit = act(AgentConfig.model_validate(raw), "freeze")
    assert (status, doc["ok"], doc["frozen after"]) == (200, True, True)
    assert [(e["who"], e["action"], e["outcome"]) for e in audit[:1]] == [("alice", "freeze", "ok")]
    status, doc, _ = act(AgentConfig.model_validate(raw), "unfreeze")
    assert (status, doc["frozen after"]) == (200, False)

    # Without the ops identity: refused, naming the setting; etcd unchanged.
    status, doc, _ = act(AgentConfig.model_validate({**raw, "etcd_ops_access": None}), "freeze")
    assert status == 503 and "etcd_ops_access" in doc["error"] and doc["frozen after"] is False


def test_a_release_fences_the_history_in_one_transaction_and_without_the_grant_releases_all_the_same(locked_etcd):
    """The agents' role may delete the leader key and write the history in one transaction. An
    estate locked before the agents wrote the history (its roles lack the grant) still fails over:
    the release falls back to the delete alone, and says what to grant."""
    from firebreak.control.agent import Agent
    from firebreak.control.config import AgentConfig
    from firebreak.control.failover import DeleteLeader

    layout, url = locked_etcd
    pk = PatroniKeys("/service/firebreak")

    async def attempts(clients):
        root = clients[access.ROOT]
        out = {}
        for grant in (True, False):
            if not grant:  # as locked by an older release: no grant on the history
                import base64
                await root._call("/v3/auth/role/revoke", {"role": "agent-siheung",
                                                         "key": base64.b64encode(pk.history.encode()).decode()})
            await root.put(pk.leader, "pangyo")
            await root.delete(pk.history)
            leader = await root.get(pk.leader)
            agent = Agent(AgentConfig.model_validate({
                "site": "siheung", "listen": "127.0.0.1:1", "etcd": [url],
                "etcd_access": str(layout.access_file("agent-siheung")),
                "sites": {s: {c: f"http://127.0.0.1:{free_port()}" for c in ("etcd", "patroni", "app", "agent")}
                          for s in SITES}}))
            try:
                await agent._release_leader(DeleteLeader("pangyo", leader.mod_revision, history='[[1,0,"x"]]'),
                                            pk, "firebreak", None)
            finally:
                await agent.close()
            history = await root.get(pk.history)
            out[grant] = (await root.get(pk.leader) is None, history.value if history else None)
        return out
    got = _run(layout, url, attempts)
    assert got == {True: (True, '[[1,0,"x"]]'), False: (True, None)}
