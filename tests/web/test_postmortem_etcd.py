"""`firebreak claims postmortem` without --ledger: the agents' ledger in a real etcd, written as the
agent writes it (site incident, each service's outage, a drill's entry, a value that is not JSON)."""

import asyncio
import json

from firebreak.control.etcd import Etcd
from firebreak.control.keys import DEFAULT as KEYS
from tests.conftest import run_cli
from tests.web.conftest import plain_etcd

T = 1_700_000_000.0


def test_a_report_from_the_agents_ledger_in_etcd(tmp_path):
    entries = {
        KEYS.ledger_entry(T, "pangyo"): {
            "site": "pangyo", "service": "site pangyo", "start": T, "end": T + 600, "kind": "site-down",
            "detail": "unreachable from ansan",
            "failover": f"released leader key of claims/pangyo at {T + 1.1:.3f}", "recorded_by": "siheung",
            "source": "agent"},
        KEYS.ledger_service_entry(T, "claims"): {
            "service": "claims", "start": T, "end": T + 1.5, "cause": "its primary's site pangyo is lost",
            "kind": "service-outage", "source": "agent", "recorded_by": "siheung"},
        KEYS.ledger_entry(T + 0.5, "pangyo", drill=True): {
            "site": "pangyo", "start": T + 0.5, "end": T + 8, "kind": "power-cut", "source": "drill",
            "scenario": "power-cut pangyo", "verdict": "pass"},
    }
    with plain_etcd("postmortem") as url:
        async def put() -> None:
            etcd = Etcd([url], timeout=3)
            try:
                for key, value in entries.items():
                    await etcd.put(key, json.dumps(value))
                await etcd.put(KEYS.ledger + "garbage", "{not json")
            finally:
                await etcd.close()
        asyncio.run(put())
        r = run_cli("claims", "postmortem", "--etcd", url, "--out", "pm.md", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "pm.md").read_text()
    assert f"from the agents' ledger in etcd ({KEYS.ledger} at {url})" in text
    assert "| site pangyo | site lost |" in text and "| siheung |" in text
    assert "| +1.10 s | failover of claims: released the leader key of pangyo" in text
    assert "| claims | 2023-11-15 07:13:20.000 | 2023-11-15 07:13:21.500 | 1.50 s |" in text
    assert "drill fault injected: power-cut of site pangyo" in text   # a rehearsal, shown as one
    assert f"{KEYS.ledger}garbage: not a JSON object; ignored" in text
