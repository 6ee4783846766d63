"""`firebreak claims credit` without --ledger reads the agents' ledger in the lab's etcd (issue 31):
a drill's entry, written the way the drill runner writes it, pays nobody; an entry left open far
longer than the policy's max_open_hours is flagged, not believed; a real closed outage is paid,
and a second run pays nothing more."""

import asyncio
import csv
import json
import time

import pytest

from firebreak.control.keys import DEFAULT as KEYS
from firebreak.lab import lab
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.lab

POLICY = str(ROOT / "examples/kakao-2022-policy.yaml")
ACCOUNTS = str(ROOT / "examples/accounts-sample.csv")


def test_credit_from_the_agents_ledger_skips_drills_and_stale_open_entries(running_lab, tmp_path):
    now = time.time()
    drill = (KEYS.ledger_entry(now - 3 * 3600, "ansan", drill=True),
             {"site": "ansan", "start": now - 3 * 3600, "end": now - 2 * 3600, "kind": "power", "source": "drill"})
    stale = (KEYS.ledger_service_entry(now - 50 * 3600, "mail"),
             {"service": "mail", "start": now - 50 * 3600, "end": None, "kind": "service-outage", "source": "agent"})
    real = (KEYS.ledger_service_entry(now - 10 * 3600, "taxi"),
            {"service": "taxi", "start": now - 10 * 3600, "end": now - 8 * 3600, "kind": "service-outage",
             "source": "agent"})

    async def put(entries, delete=False):
        etcd = lab.etcd_client(timeout=2)
        try:
            for key, value in entries:
                await (etcd.delete(key) if delete else etcd.put(key, json.dumps(value)))
        finally:
            await etcd.close()

    asyncio.run(put([drill, stale, real]))
    try:
        out = tmp_path / "batches"
        args = ("claims", "credit", "--policy", POLICY, "--accounts", ACCOUNTS, "--out", str(out), "--format", "json")
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["ledger"]["source"] == "etcd"
        notes = " ".join(doc["ledger"]["notes"])
        assert "drill entr" in notes and "longer than max_open_hours" in notes, notes
        # The taxi outage (2 h) is paid: the partner using taxi, by its declared sales. (The lab's
        # ledger may hold other entries of its own; the drill's and the stale one's are not paid.)
        ids = {i["id"] for i in doc["incidents"]}
        assert int(stale[1]["start"]) not in ids
        assert not any(i["start"] <= drill[1]["start"] < i["end"] for i in doc["incidents"]), doc["incidents"]
        rows = list(csv.DictReader((out / doc["files"]["csv"]["name"]).open()))
        assert {"account": "p-2001", "amount": "36000", "goodwill": "", "incident": str(int(real[1]["start"])),
                "rule": "partner-sales"} in rows
        again = json.loads(run_cli(*args).stdout)
        assert again["totals"]["amount"] == 0 and again["totals"]["already_paid"] == doc["totals"]["amount"]
    finally:
        asyncio.run(put([drill, stale, real], delete=True))
