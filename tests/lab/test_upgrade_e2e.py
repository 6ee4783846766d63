"""A rolling upgrade on the real lab: every site's agent restarted, one site at a time, while
writes flow, beside values written by a newer agent (a field this one does not know) and an older
one (a field it expects, missing). No failover, no site voted dead, no write gap. Shares the
agents' lab with the other control-plane modules; the test leaves it healthy."""

import asyncio
import json
import time

import httpx
import pytest

from firebreak.control import keys
from firebreak.drill import checks
from firebreak.lab import access, lab
from firebreak.lab.state import lab_home, load
from tests.lab.conftest import wait_for
from tests.lab.test_control_e2e import healthy, run_load, settled_coordinator, stored_keys, stored_ordinary

pytestmark = pytest.mark.lab

OBJECTIVE = 3.0


def as_agent(site, op, *args):
    """put/delete with `site`'s agent identity, as the newer agent would."""
    async def go():
        etcd = access.client(load(lab_home()).layout, access.agent_role(site), timeout=5)
        try:
            await getattr(etcd, op)(*args)
        finally:
            await etcd.close()
    asyncio.run(go())


def incidents(console):
    return [e for e in httpx.get(console + "/api/ledger", timeout=5).json() if e.get("kind") != "drill"]


def test_agents_restarted_one_site_at_a_time_while_writes_flow(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    sites = list(st["sites"])
    consoles = {n: s["console"] for n, s in st["sites"].items()}
    wait_for(lambda: settled_coordinator(consoles), 30, "a settled coordinator")
    before = len(incidents(consoles[sites[0]]))
    # A ledger entry from a newer agent: a field this version does not know, and still closed.
    start = time.time() - 60
    entry = {"site": "nowhere", "start": start, "end": start + 30, "kind": "site-down", "detail": "test: a newer "
             "agent's entry", "failover": "", "recorded_by": sites[0], "source": "agent", "next_version": {"x": 1}}
    future = keys.DEFAULT.ledger_entry(start, "nowhere")
    as_agent(sites[0], "put", future, json.dumps(entry))
    restarted = []

    def roll():
        # After each restart the agent must be back and agreed with before the next site goes.
        for site in sites:
            lab.stop_component(site, "agent")
            lab.start_component(site, "agent")
            restarted.append(site)
            wait_for(lambda: settled_coordinator(consoles), 60, f"the coordinator to settle after {site}'s restart")
    try:
        ops, at, _ = run_load(st, roll, sites, settle=3.0, db_doors=[sites[1]])
        end = max(o.complete for o in ops)
        assert restarted == sites
        gap = checks.max_write_gap(ops, at, end)
        assert gap <= OBJECTIVE, f"writes stopped for {gap:.2f} s during the rolling restart"
        assert checks.max_write_gap(ops, at, end, "sql") <= OBJECTIVE
        after = wait_for(healthy, 90, "a healthy lab after the rolling restart")
        assert after["primary"] == st["primary"], "a rolling restart of the agents failed the database over"
        assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
        assert checks.lost_writes(ops, stored_ordinary(after["postgres_dsn"]), "sql") == []
        docs = {n: httpx.get(u + "/api/status", timeout=5).json() for n, u in consoles.items()}
        assert all(not v["dead"] for d in docs.values() for v in d["sites"].values()), docs
        # No site was voted dead at any moment: no incident was opened.
        assert len(incidents(consoles[sites[0]])) == before + 1  # the newer agent's entry, read, not choked on
    finally:
        as_agent(sites[0], "delete", future)
