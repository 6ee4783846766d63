"""etcd may go away: Patroni's failsafe_mode keeps the primary writing while every database
server can reach every other, and the agents resume by themselves when etcd returns. Shares the
agents' lab with the other control-plane modules; each test leaves it healthy."""

import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from firebreak.deploy.components import TCP_RTO_MAX_MS
from firebreak.drill import checks
from firebreak.lab import lab
from firebreak.lab import state as lab_state
from tests.lab.conftest import wait_for
from tests.lab.test_control_e2e import healthy, run_load, settled_coordinator, stored_keys, stored_ordinary

pytestmark = pytest.mark.lab

# Longer than Patroni's ttl (20 s): every lease, the leader key's included, expires while etcd is
# away. bench/replication.py holds it for the full minute.
OUTAGE = 25.0
OBJECTIVE = 3.0  # the longest write gap a power cut may cost; an etcd outage may cost no more
AFTER = 15.0  # writes go on this long after etcd returns
RTO_MAX = "/proc/sys/net/ipv4/tcp_rto_max_ms"  # Linux 6.15 or later


def judge_etcd_outage(paused: list[str], cut: bool = False) -> None:
    """Writes go on through the outage on the same primary and timeline (no demotion, nothing
    promoted), nothing acknowledged is lost, and once etcd is back the agents agree on a
    coordinator and the lab is healthy without anyone touching it. `cut`: the members are cut
    off at the network (netns) instead of paused."""
    st = wait_for(healthy, 60, "a healthy lab")
    primary = st["primary"]
    sites = list(st["sites"])
    door = next(n for n in sites if n != primary)

    resumed = threading.Event()

    def stop_etcd():
        for site in paused:
            if cut:
                lab.cut_etcd(site)
            else:
                lab.pause(site, "etcd")
        threading.Timer(OUTAGE, lambda: ([heal(s) for s in paused], resumed.set())).start()

    def heal(site):
        if cut:
            lab.unisolate(site)
        else:
            lab.resume(site)
    try:
        # Writers run through the outage and AFTER (etcd's return is a change too: Patroni takes
        # its leader key again, the agents read the clusters afresh).
        ops, at, _ = run_load(st, stop_etcd, sites, settle=OUTAGE + AFTER, db_doors=[door])
    finally:
        resumed.wait(OUTAGE + 30)
        for site in paused:
            heal(site)
    end = at + OUTAGE + AFTER
    acked = [o for o in checks.acked(ops) if at <= o.complete <= end]
    assert len([o for o in acked if o.complete <= at + OUTAGE]) > 0, "no write was acknowledged while etcd was away"
    gap = checks.max_write_gap(ops, at, end)
    assert gap <= OBJECTIVE, f"writes stopped for {gap:.2f} s while etcd was away or as it returned"
    sql_gap = checks.max_write_gap(ops, at, end, "sql")
    assert sql_gap <= OBJECTIVE, f"the ordinary client through {door}'s database door waited {sql_gap:.2f} s"
    timelines = {o.timeline for o in acked if o.timeline}
    assert len(timelines) <= 1, f"writes on timelines {sorted(timelines)}: something was promoted"
    assert checks.split_brain(ops) == []

    after = wait_for(healthy, 120, "a healthy lab once etcd is back")
    assert after["primary"] == primary, f"the primary moved from {primary} to {after['primary']}: a needless failover"
    assert checks.lost_writes(ops, stored_keys(after["postgres_dsn"])) == []
    assert checks.lost_writes(ops, stored_ordinary(after["postgres_dsn"]), "sql") == []
    consoles = {n: s["console"] for n, s in after["sites"].items()}
    wait_for(lambda: settled_coordinator(consoles), 60, "the agents to agree on a coordinator again")
    docs = {n: httpx.get(u + "/api/status", timeout=5).json() for n, u in consoles.items()}
    dead = {n: [s for s, v in d["sites"].items() if v["dead"]] for n, d in docs.items()}
    assert all(not d for d in dead.values()), f"sites voted dead after etcd returned: {dead}"


def test_every_etcd_member_paused_costs_no_write(running_lab):
    judge_etcd_outage(list(lab.status()["sites"]))


def test_etcd_quorum_lost_costs_no_write(running_lab):
    """Two of three sites' etcd members cut off at the network (as root, in the netns lab; as a
    normal user, paused): the third runs but has no quorum, so every read and write there times
    out, while every PostgreSQL server and Patroni still reaches every other."""
    st = wait_for(healthy, 60, "a healthy lab")
    # Keep the primary's own etcd member running: the harder case for Patroni, which then talks
    # to a member that answers connections and serves nothing.
    others = [n for n in st["sites"] if n != st["primary"]]
    cut = lab.status()["net"] == "netns"
    if cut and Path(RTO_MAX).exists():
        # Each site's namespace runs with a real host's kernel settings (components.kernel_settings):
        # with TCP's own 120 s cap, etcd's members re-formed 48 s after a 60 s cut healed.
        layout = lab_state.load().layout
        for site in layout.sites:
            r = subprocess.run(["ip", "netns", "exec", site.netns, "cat", RTO_MAX], capture_output=True, text=True)
            assert r.stdout.strip() == str(TCP_RTO_MAX_MS), f"{site.name}: tcp_rto_max_ms {r.stdout.strip()} {r.stderr}"
    judge_etcd_outage(others, cut=cut)
