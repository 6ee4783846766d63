"""The drill runner's declaration (drill/harness.py Declaration, issue 31): every faulted site
declared in etcd (control/keys.py `drills/<site>`) before its fault, under one lease kept alive
while the drill runs, all of it gone at the end; a site that cannot be declared is never faulted.
The value it writes is read back with the coordinator's parser (control/drills.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from firebreak.control.drills import Drill
from firebreak.drill import harness
from firebreak.drill.scenario import FaultStep, HealStep, Scenario, WaitStep
from firebreak.errors import EtcdError, LabError


@pytest.mark.parametrize("steps,seconds", [
    ([WaitStep(wait=30)], harness.END_WAIT + 30),
    ([FaultStep(fault="power-cut", site="primary")], harness.END_WAIT + harness.INJECT_S + harness.UNHELD_WAIT),
    ([FaultStep(fault="isolate", site="ansan", duration=8)], harness.END_WAIT + harness.INJECT_S + 8),
    ([FaultStep(fault="pause", site="ansan")], harness.END_WAIT + harness.INJECT_S + 8 + harness.PAUSE_WAIT),
    ([HealStep(heal="all", settle=45)], harness.END_WAIT + harness.INJECT_S + 45 + harness.SETTLE_CHECKS_S),
])
def test_a_drill_plans_its_longest_run_with_every_wait_at_its_limit(steps, seconds):
    assert harness.planned_seconds(Scenario(name="s", steps=steps)) == seconds


class FakeEtcd:
    """What the declaration asks of etcd, with leases that can be lost."""

    def __init__(self, fail_puts=False):
        self.kv: dict[str, tuple[str, int]] = {}
        self.leases: set[int] = set()
        self.calls: list[str] = []
        self.fail_puts = fail_puts
        self.closed = False

    async def grant(self, ttl):
        lease = len(self.calls) + 100
        self.leases.add(lease)
        self.calls.append(f"grant {ttl}")
        return lease

    async def put(self, key, value, lease=0):
        if self.fail_puts:
            raise EtcdError("no etcd member answered /v3/kv/put")
        assert lease in self.leases
        self.kv[key] = (value, lease)
        self.calls.append(f"put {key}")

    async def keepalive(self, lease):
        self.calls.append("keepalive")
        return 5 if lease in self.leases else 0

    def lose(self, lease):
        """etcd let the lease run out: its keys went with it."""
        self.leases.discard(lease)
        self.kv = {k: v for k, v in self.kv.items() if v[1] != lease}

    async def revoke(self, lease):
        self.lose(lease)
        self.calls.append("revoke")

    async def close(self):
        self.closed = True


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_each_site_is_declared_under_one_kept_lease_and_all_go_at_the_end():
    etcd = FakeEtcd()
    d = harness.Declaration("s@1000.000", until=1500.0, connect=lambda: etcd, ttl=1, clock=lambda: 1001.0)
    d.open()
    try:
        d.site("pangyo", "partition")
        d.site("ansan", "partition")
        (lease,) = etcd.leases
        parsed = {k.rsplit("/", 1)[1]: Drill.from_value(k.rsplit("/", 1)[1], v, le) for k, (v, le) in etcd.kv.items()}
        assert parsed == {s: Drill(s, "s@1000.000", 1001.0, 1500.0) for s in ("pangyo", "ansan")}
        assert all(le == lease for _, le in etcd.kv.values())
        wait_until(lambda: "keepalive" in etcd.calls)  # kept alive while the steps sleep
        # The process was stopped longer than the TTL and etcd let the lease go: declared again.
        etcd.lose(lease)
        wait_until(lambda: len(etcd.kv) == 2)
        assert {le for _, le in etcd.kv.values()} == etcd.leases != {lease}
    finally:
        said = d.close()
    assert etcd.kv == {} and etcd.closed and "no longer declared" in said
    assert d.close() == ""  # closing twice is a no-op


def test_a_site_that_cannot_be_declared_is_never_faulted(monkeypatch):
    etcd = FakeEtcd(fail_puts=True)
    faulted = []
    monkeypatch.setattr(harness.lab, "power_off", lambda site: faulted.append(site) or {"silenced": "none"})
    d = harness.Declaration("s@1", until=2.0, connect=lambda: etcd, ttl=5)
    d.open()
    try:
        with pytest.raises(LabError, match="could not declare the drill over pangyo in etcd before faulting it"):
            harness._inject(FaultStep(fault="power-cut", site="pangyo"), "pangyo", [], [], lambda _: None,
                            declaration=d)
    finally:
        d.close()
    assert faulted == []


def test_a_drill_declares_before_it_faults_and_ends_its_declaration_after_the_heal(monkeypatch):
    order = []

    class Recording(harness.Declaration):
        def open(self):
            order.append("open")

        def site(self, site, fault):
            order.append(f"declare {site}")

        def close(self):
            order.append("close")
            return "closed"

    monkeypatch.setattr(harness.lab, "power_off", lambda site: order.append(f"power off {site}") or {"silenced": "x"})
    monkeypatch.setattr(harness.lab, "power_on", lambda site: order.append(f"power on {site}"))
    monkeypatch.setattr(harness.lab, "status", lambda: {"sites": {"pangyo": {"state": "off"}}})
    monkeypatch.setattr(harness, "wait_healthy", lambda timeout=0: {})
    monkeypatch.setattr(harness.time, "sleep", lambda s: None)
    harness.drive(Scenario(name="s", steps=[FaultStep(fault="power-cut", site="pangyo", duration=1)]), [],
                  threading.Event(), lambda at: 0.1, lambda r: None, [], [], lambda m: None,
                  declaration=Recording("s@1", 2.0))
    assert order == ["open", "declare pangyo", "power off pangyo", "power on pangyo", "close"]


def test_a_declaration_that_cannot_open_stops_the_drill_before_any_fault(monkeypatch):
    async def refuse(_ttl):
        raise EtcdError("etcd denied /v3/lease/grant to user 'root'")
    etcd = FakeEtcd()
    etcd.grant = refuse
    faulted = []
    monkeypatch.setattr(harness.lab, "power_off", lambda site: faulted.append(site))
    with pytest.raises(LabError, match="could not grant the drill's declaration a lease"):
        harness.drive(Scenario(name="s", steps=[FaultStep(fault="power-cut", site="pangyo")]), [], threading.Event(),
                      lambda at: 0.1, lambda r: None, [], [], lambda m: None,
                      declaration=harness.Declaration("s@1", 2.0, connect=lambda: etcd))
    assert faulted == [] and etcd.closed


def test_the_declarations_event_loop_is_its_own_threads():
    """The declaration's loop is its own thread's: a caller's asyncio.run still works after it."""
    etcd = FakeEtcd()
    d = harness.Declaration("s@1", until=2.0, connect=lambda: etcd, ttl=5)
    d.open()
    d.close()
    assert asyncio.run(asyncio.sleep(0, result=1)) == 1
