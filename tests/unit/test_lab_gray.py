"""The lab's gray failures (a cut link, a pause): the nftables text they generate, the selection
of PostgreSQL's processes, the lab state's record of what a fault left, and pauses tried on
throwaway processes of our own."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firebreak.lab import net, procs
from firebreak.lab.layout import make_layout
from firebreak.lab.state import LabState, SiteState

SITES = ["pangyo", "ansan", "siheung"]


# --- nftables text ---------------------------------------------------------------------------

def test_one_end_of_a_cut_link_drops_the_peer_both_ways_and_nothing_else():
    text = net.cut_rules("ansan", "10.77.0.12")
    assert text == ("table inet firebreak_cut_ansan {\n"
                    "  chain input { type filter hook input priority 0; ip saddr 10.77.0.12 drop; }\n"
                    "  chain output { type filter hook output priority 0; ip daddr 10.77.0.12 drop; }\n}\n")


def test_an_etcd_cut_drops_other_sites_at_the_member_s_ports_and_its_peer_traffic_out_only():
    text = net.etcd_cut_rules(12379, 12380)
    # in: the client and peer ports from anywhere but the site's own loopback; out: only the
    # member's peer traffic, so the site's Patroni and agent still reach the other members
    assert 'iifname != "lo" tcp dport { 12379, 12380 } drop' in text
    assert 'oifname != "lo" tcp dport 12380 drop' in text
    assert "12379" not in text.split("chain output")[1]
    assert text.startswith(f"table inet {net.ETCD_CUT_TABLE} {{")


def test_an_etcd_cut_needs_the_netns_lab():
    layout = make_layout(Path("/x"), "loopback", SITES, "abcd1234")
    with pytest.raises(net.LabError, match="netns"):
        net.cut_etcd(layout, layout.site("ansan"))


def test_a_cut_table_is_named_for_the_peer_in_nft_s_alphabet():
    assert net.cut_table("ansan") == "firebreak_cut_ansan"
    assert net.cut_table("new-site-2") == "firebreak_cut_new_site_2"
    assert net.cut_table("a-b") != net.cut_table("ab")


def test_the_retransmission_floor_is_set_on_a_site_s_route_to_the_others_and_taken_off_with_0():
    layout = make_layout(Path("/x"), "netns", SITES, "abcd1234")
    site = layout.site("ansan")
    argv = net.rto_min_route(site, 20)
    # the connected route the kernel made for the site's link, replaced with the same key
    assert argv[:4] == ["ip", "-n", site.netns, "route"] and argv[4] == "replace"
    assert argv[5] == "10.77.0.0/24" and argv[argv.index("dev") + 1] == net.site_link(site)
    assert argv[argv.index("src") + 1] == site.address
    assert argv[-2:] == ["rto_min", "20ms"]
    assert "rto_min" not in net.rto_min_route(site, 0)


def test_a_cut_on_loopback_drops_the_pair_both_ways_tagged_for_its_undo():
    layout = make_layout(Path("/x"), "loopback", SITES, "abcd1234")
    rules = net.cut_loopback_rules(layout.site("pangyo"), layout.site("ansan"))
    tail = ["drop", "comment", '"cut:pangyo-ansan"']
    assert rules == [
        ["nft", "add", "rule", "inet", net.NFT_TABLE, "output", "ip", "saddr", "127.0.11.1", "ip", "daddr", "127.0.12.1", *tail],
        ["nft", "add", "rule", "inet", net.NFT_TABLE, "output", "ip", "saddr", "127.0.12.1", "ip", "daddr", "127.0.11.1", *tail],
    ]
    assert "127.0.13.1" not in str(rules), "siheung's links are not touched"


def test_a_link_cannot_join_a_site_to_itself():
    layout = make_layout(Path("/x"), "netns", SITES, "abcd1234")
    with pytest.raises(Exception, match="two different sites"):
        net.cut(layout, layout.site("ansan"), layout.site("ansan"))


# --- PostgreSQL's processes ------------------------------------------------------------------

def test_postgres_family_is_the_postmaster_its_children_and_theirs_only():
    table = {
        10: ("etcd", 1), 11: ("patroni", 1),
        20: ("postgres", 11),          # postmaster, started by Patroni
        21: ("postgres", 20), 22: ("postgres", 20),  # backends, checkpointer...
        23: ("sh", 20), 24: ("cp", 23),  # an archive command and its child
        30: ("caddy", 1), 31: ("python3", 11),  # Patroni's own helper is not PostgreSQL
        40: ("postgres", 999),         # a second cluster's postmaster, parent unknown (setsid)
    }
    assert procs.postgres_family(table) == [20, 21, 22, 23, 24, 40]


def test_a_site_is_its_marked_processes_and_every_descendant_of_them():
    table = {1: ("init", 0), 11: ("patroni", 1), 20: ("postgres", 1), 21: ("postgres", 20), 22: ("postgres", 20),
             23: ("sh", 21), 30: ("bash", 1), 31: ("sleep", 30), 99: ("gone", 1)}
    # The backends 21, 22 (and what 21 started) carry no marker: their titles overwrote it.
    assert procs.with_descendants(table, [11, 20]) == [11, 20, 21, 22, 23]
    assert procs.with_descendants(table, [404]) == [], "a PID no longer running is no root"
    assert procs.postgres_of(table, [11, 20, 21, 22, 23]) == [20, 21, 22, 23]


def test_postgres_family_of_a_site_without_postgres_is_empty_and_survives_a_cycle():
    assert procs.postgres_family({1: ("a", 2), 2: ("b", 1)}) == []
    assert procs.postgres_family({}) == []


# --- the lab's record of what a fault left ---------------------------------------------------

def test_the_lab_state_keeps_cut_links_and_paused_processes_across_a_save():
    paused = procs.Proc(pid=123, start=456, site="ansan", component="paused")
    st = LabState(lab_id="x", net="netns", topology="t", site_names=SITES, home=Path("/h"),
                  sites={"pangyo": SiteState(cut=["ansan"]), "ansan": SiteState(cut=["pangyo"], paused=[paused]),
                         "siheung": SiteState()})
    back = LabState.from_json(st.to_json())
    assert back.sites["pangyo"].cut == ["ansan"] and back.sites["ansan"].paused == [paused]
    assert back.sites["siheung"].cut == [] and back.sites["siheung"].paused == []


def test_a_state_written_before_gray_faults_still_loads():
    old = LabState(lab_id="x", net="netns", topology="t", site_names=SITES, home=Path("/h"),
                   sites={n: SiteState() for n in SITES}).to_json()
    for s in old["sites"].values():
        del s["cut"], s["paused"]
    assert LabState.from_json(old).sites["ansan"].paused == []


# --- pausing processes of our own ------------------------------------------------------------

def test_a_pause_stops_only_marked_processes_and_resume_continues_exactly_those(tmp_path):
    lab_id = "test" + os.urandom(3).hex()
    ours = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"], site="a", component="x", lab_id=lab_id,
                       log=tmp_path / "x.log")
    other_site = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"], site="b", component="x",
                             lab_id=lab_id, log=tmp_path / "y.log")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30  # a deadline, not a timing: CI runs this at nice 19 beside the lab tests
        while ours.pid not in procs.marked(lab_id, "a"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        paused = procs.pause(lab_id, "a")
        assert [p.pid for p in paused] == [ours.pid] and paused[0].start == ours.start
        wait_state(ours.pid, "T")  # a stop lands as the kernel schedules it
        assert state_of(other_site.pid) != "T" and state_of(other.pid) != "T"
        # A recycled PID is never continued: a record whose start time differs is skipped.
        assert procs.resume([procs.Proc(pid=other.pid, start=-1, site="a", component="paused")]) == 0
        assert procs.resume(paused) == 1
        wait_state(ours.pid, "S")
    finally:
        for pid in (ours.pid, other_site.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        other.kill()
        other.wait()


def test_a_pause_of_etcd_stops_its_process_alone(tmp_path):
    """`--component etcd`: the store gone, every other process of the site running on."""
    lab_id = "test" + os.urandom(3).hex()
    etcd = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"], site="a", component="etcd",
                       lab_id=lab_id, log=tmp_path / "etcd.log")
    patroni = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"], site="a", component="patroni",
                          lab_id=lab_id, log=tmp_path / "patroni.log")
    try:
        paused = procs.pause(lab_id, "a", only="etcd", known=[etcd.pid, patroni.pid], roots=[etcd.pid])
        assert [p.pid for p in paused] == [etcd.pid]
        wait_state(etcd.pid, "T")
        assert state_of(patroni.pid) != "T"
        assert procs.resume(paused) == 1
        wait_state(etcd.pid, "S")
    finally:
        procs.power_cut([etcd.pid, patroni.pid])


def parent_and_unmarked_child(tmp: Path, lab_id: str, site: str) -> tuple[procs.Proc, int]:
    """A marked process and a child of it without the marker, like a PostgreSQL backend whose
    title overwrote its environment; the child's PID once it is running."""
    child_pid = tmp / "child.pid"
    parent = procs.spawn([sys.executable, "-c", "import subprocess, sys, time; "
                          "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], env={}); "
                          f"open({str(child_pid)!r}, 'w').write(str(c.pid)); time.sleep(60)"],
                         site=site, component="x", lab_id=lab_id, log=tmp / "x.log")
    deadline = time.monotonic() + 30
    while not child_pid.exists() or not child_pid.read_text():
        if time.monotonic() > deadline:
            procs.power_cut(procs.with_descendants(procs.process_table(), [parent.pid]))
            raise AssertionError("the child did not start within 5 s")
        time.sleep(0.05)
    return parent, int(child_pid.read_text())


def test_a_pause_also_stops_children_whose_marker_is_gone(tmp_path):
    """Like a PostgreSQL backend, whose title overwrote its environment: found by ancestry."""
    lab_id = "test" + os.urandom(3).hex()
    parent, child = parent_and_unmarked_child(tmp_path, lab_id, "a")
    try:
        assert child not in procs.marked(lab_id, "a")
        paused = procs.pause(lab_id, "a")
        assert sorted(p.pid for p in paused) == sorted([parent.pid, child])
        wait_state(child, "T")
        assert procs.resume(paused) == 2
        wait_state(child, "S")
    finally:
        procs.power_cut(procs.with_descendants(procs.process_table(), [parent.pid]))


def test_terminate_ends_a_stopped_process_without_waiting_for_its_kill(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(p.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        procs.terminate([p.pid], timeout=5)
        assert p.wait(5) == -signal.SIGTERM  # SIGTERM, continued: not the SIGKILL after the grace
        assert time.monotonic() - t0 < 4
    finally:
        p.kill()
        p.wait()


def wait_state(pid: int, want: str) -> None:
    deadline = time.monotonic() + 30
    while state_of(pid) != want:
        assert time.monotonic() < deadline, f"process {pid} is {state_of(pid)}, not {want}"
        time.sleep(0.02)


def state_of(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()[0]


# --- what faults record in the lab's state, with the network and signals faked -----------------

@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    from firebreak.lab import faults
    from firebreak.lab.state import save

    calls = []
    for name in ("cut", "uncut", "heal", "undegrade"):
        monkeypatch.setattr(net, name, lambda *a, _n=name: calls.append((_n, *[getattr(x, "name", x) for x in a[1:]]))
                            or "netns-nftables")
    monkeypatch.setattr(procs, "resume", lambda paused: calls.append(("resume", sorted(p.pid for p in paused)))
                        or len(list(paused)))
    monkeypatch.setattr(faults.lifecycle, "down", lambda **kw: calls.append(("down",)) or True)
    save(LabState(lab_id="x", net="netns", topology="t", site_names=SITES, home=tmp_path,
                  sites={n: SiteState() for n in SITES}))
    return tmp_path, calls


def sites_state(home):
    from firebreak.lab.state import load
    st = load(home)
    return {n: (s.cut, [p.pid for p in s.paused]) for n, s in st.sites.items()}


def test_a_cut_is_recorded_at_both_ends_and_undone_in_either_order(lab_home):
    from firebreak.lab import faults
    home, calls = lab_home
    faults.cut("pangyo", "ansan", home)
    faults.cut("pangyo", "ansan", home)  # again: recorded once
    assert sites_state(home) == {"pangyo": (["ansan"], []), "ansan": (["pangyo"], []), "siheung": ([], [])}
    assert faults.uncut("ansan", "pangyo", home)["changed"] is True
    assert sites_state(home)["pangyo"] == ([], []) and sites_state(home)["ansan"] == ([], [])
    assert calls[-1] == ("uncut", "ansan", "pangyo")


def test_healing_a_site_undoes_every_cut_with_it_at_either_end_and_no_other(lab_home):
    from firebreak.lab import faults
    home, calls = lab_home
    faults.cut("pangyo", "ansan", home)
    faults.cut("siheung", "ansan", home)
    faults.cut("pangyo", "siheung", home)
    calls.clear()
    faults.heal("ansan", home)
    assert ("uncut", "ansan", "pangyo") in calls and ("uncut", "ansan", "siheung") in calls
    assert sites_state(home) == {"pangyo": (["siheung"], []), "ansan": ([], []), "siheung": (["pangyo"], [])}


def test_resume_and_down_continue_what_a_pause_recorded(lab_home):
    from firebreak.lab import faults
    from firebreak.lab.state import load, save
    home, calls = lab_home
    st = load(home)
    st.sites["ansan"].paused = [procs.Proc(pid=7, start=1, site="ansan", component="paused")]
    save(st)
    assert faults.resume("ansan", home)["changed"] is True
    assert calls == [("resume", [7])] and sites_state(home)["ansan"] == ([], [])
    st = load(home)
    st.sites["siheung"].paused = [procs.Proc(pid=9, start=1, site="siheung", component="paused")]
    save(st)
    calls.clear()
    assert faults.down(home=home) is True
    assert ("resume", [9]) in calls and calls[-1] == ("down",)


def test_a_pause_of_an_unknown_component_or_a_link_to_itself_is_refused_before_the_lab_is_read(tmp_path):
    from firebreak.errors import InputError
    from firebreak.lab import faults
    with pytest.raises(InputError, match="unknown component 'patroni'"):
        faults.pause("ansan", "patroni", tmp_path / "nowhere")
    with pytest.raises(InputError, match="two different sites"):
        faults.cut("ansan", "ansan", tmp_path / "nowhere")


def test_a_power_cut_kills_children_whose_marker_is_gone(lab_home, monkeypatch):
    """A backend whose title overwrote its marker dies with its site: spared, one acknowledged a
    commit after a loopback lab's power cut (its walsender, spared too, still streamed)."""
    from firebreak.lab import faults
    home, calls = lab_home
    monkeypatch.setattr(net, "silence", lambda layout, site: "none")
    parent, child = parent_and_unmarked_child(home, "x", "pangyo")
    try:
        assert child not in procs.marked("x", "pangyo")
        assert faults.power_off("pangyo", home)["killed"] == 2
        for pid in (parent.pid, child):
            deadline = time.monotonic() + 5
            while procs.start_time(pid) is not None:
                assert time.monotonic() < deadline, f"{pid} outlived the power cut"
                time.sleep(0.02)
    finally:
        procs.power_cut(procs.with_descendants(procs.process_table(), [parent.pid]))
