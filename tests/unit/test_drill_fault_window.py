"""A fault's window opens when its injection starts, not when the call returns (issue 27): on a
loopback lab a power cut refuses connections at once, so a read in flight fails while the site is
still being stopped, and it must fall inside the fault's window, not count against a site "not
under a fault"."""

import time

from firebreak.drill import harness
from firebreak.drill.scenario import FaultStep


def test_a_power_cut_is_dated_from_before_its_injection(monkeypatch):
    began = {}

    def power_off(site):
        began[site] = time.monotonic()
        time.sleep(0.05)  # the site's processes die one by one while this runs
        return {"silenced": "none"}

    monkeypatch.setattr(harness.lab, "power_off", power_off)
    faults, events = [], []
    harness._inject(FaultStep(fault="power-cut", site="a"), "a", faults, events, lambda _: None)
    assert faults[-1].since <= began["a"]
    assert events[-1].at == faults[-1].since and events[-1].kind == "fault"
