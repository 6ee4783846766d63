"""The lab's pure parts: layout, DSNs and component configuration; and process handling on
throwaway processes of our own."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firebreak.control.etcd import EtcdAccess

from firebreak.errors import LabError
from firebreak.lab import net, procs
from firebreak.lab.config import (PATRONI_LOOP_WAIT, PATRONI_RETRY_TIMEOUT, PATRONI_TTL, Secrets, etcd_argv, etcd_config,
                                  patroni_config)
from firebreak.lab.layout import make_layout

SITES = ["pangyo", "ansan", "siheung"]
SECRETS = Secrets(superuser="s", replication="r", app="a", cluster_token="t")


@pytest.mark.parametrize("mode,first", [("loopback", "127.0.11.1"), ("netns", "10.77.0.11")])
def test_each_site_is_its_own_network_place(mode, first):
    layout = make_layout(Path("/x"), mode, SITES, "abcd1234")
    addrs = [s.address for s in layout.sites]
    assert addrs[0] == first and len(set(addrs)) == 3
    assert all(a.startswith("127.") for a in addrs) == (mode == "loopback")
    assert [s.netns for s in layout.sites] == ([None] * 3 if mode == "loopback" else ["fb-pangyo", "fb-ansan", "fb-siheung"])
    assert layout.site("ansan").socket_dir != layout.site("pangyo").socket_dir


def test_dsn_names_every_site_and_asks_for_the_primary():
    layout = make_layout(Path("/x"), "loopback", SITES, "abcd1234")
    dsn = layout.dsn("claims", "p@ss/word")
    assert dsn.startswith("postgresql://claims:p%40ss%2Fword@127.0.11.1:15432,127.0.12.1:15432,127.0.13.1:15432/claims?")
    assert "target_session_attrs=read-write" in dsn and "tcp_user_timeout=" in dsn
    local = layout.dsn("claims", "x", read_write=False, sites=["ansan"])
    assert "@127.0.12.1:15432/" in local and "target_session_attrs" not in local


def test_patroni_config_is_synchronous_with_the_fastest_timers_patroni_allows():
    layout = make_layout(Path("/x"), "netns", SITES, "abcd1234")
    cfg = patroni_config(layout, layout.site("ansan"), SECRETS, "/bin",
                         EtcdAccess("/x/pki/ca.pem", "/x/c.pem", "/x/k.pem", "patroni", "pw"))
    dcs = cfg["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True and dcs["ttl"] == PATRONI_TTL == 20
    assert PATRONI_LOOP_WAIT + 2 * PATRONI_RETRY_TIMEOUT <= PATRONI_TTL  # Patroni's own rule
    assert cfg["name"] == "ansan" and cfg["restapi"]["listen"].startswith("10.77.0.12:")
    assert cfg["etcd3"]["hosts"] == ["10.77.0.12:12379"]  # its own site's member only
    # a locked etcd: TLS with its CA, its client certificate, its own etcd user
    assert cfg["etcd3"]["protocol"] == "https" and cfg["etcd3"]["cacert"] == "/x/pki/ca.pem"
    assert (cfg["etcd3"]["username"], cfg["etcd3"]["cert"]) == ("patroni", "/x/c.pem")
    # pg_wal has a bound: a slot for a member that stopped reading may not hold WAL without one
    wal = dcs["postgresql"]["parameters"]
    assert (wal["max_wal_size"], wal["wal_keep_size"], wal["max_slot_wal_keep_size"]) == ("1024MB", "2048MB", "1024MB")
    pg = cfg["postgresql"]
    assert pg["parameters"]["unix_socket_directories"].endswith("sites/ansan/run")
    # no password-less network access: only the private socket directory is trusted
    assert all("trust" not in line or line.startswith("local") for line in pg["pg_hba"])


def test_etcd_members_form_one_cluster():
    layout = make_layout(Path("/x"), "loopback", SITES, "abcd1234")
    conf = etcd_config(layout, layout.site("pangyo"), "tok")
    cluster = conf["initial-cluster"]
    assert cluster.count("=https://") == 3 and "pangyo=https://127.0.11.1:12380" in cluster
    # TLS on client and peer links, and a client certificate required from every client and peer
    assert conf["listen-client-urls"] == "https://127.0.11.1:12379"
    client, peer = conf["client-transport-security"], conf["peer-transport-security"]
    assert client["client-cert-auth"] is True and peer["client-cert-auth"] is True
    assert client["trusted-ca-file"] == "/x/pki/ca.pem"
    # signed auth tokens, good at every member even after one restarts (not in-memory simple ones)
    token = conf["auth-token"]
    assert token.startswith("jwt,") and "sign-method=ES256" in token
    assert "priv-key=/x/sites/pangyo/etcd-tls/token-key.pem" in token and "ttl=10m" in token
    # a cut-off member does not depose a leader when it comes back; history and memory bounded
    assert conf["pre-vote"] is True and conf["auto-compaction-retention"] == "5m"
    assert conf["quota-backend-bytes"] == 2 * 2**30 and conf["snapshot-count"] == 10_000
    assert conf["listen-metrics-urls"] == "http://127.0.11.1:12381"  # the agents' plain probe listener


def test_etcd_runs_from_its_file_as_the_rendered_unit_runs_it(tmp_path):
    import yaml

    layout = make_layout(tmp_path, "loopback", SITES, "abcd1234")
    site = layout.site("ansan")
    argv = etcd_argv("/usr/bin/etcd", layout, site, "tok")
    assert argv == ["/usr/bin/etcd", "--config-file", str(site.dir / "etcd.yml")]
    assert yaml.safe_load((site.dir / "etcd.yml").read_text()) == etcd_config(layout, site, "tok")


def test_netns_needs_root():
    if os.geteuid() == 0:
        assert net.resolve_mode("auto") == "netns"
    else:
        assert net.resolve_mode("auto") == "loopback"
        with pytest.raises(LabError):
            net.resolve_mode("netns")


def test_power_cut_kills_only_marked_processes(tmp_path):
    lab_id = "test" + os.urandom(3).hex()
    sleeper = [sys.executable, "-c", "import subprocess, sys, time; "
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
               "time.sleep(60)"]
    ours = procs.spawn(sleeper, site="a", component="x", lab_id=lab_id, log=tmp_path / "x.log")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # the detached grandchild (like postmaster after setsid) carries the marker too
        found = wait_marked(lab_id, 2)
        assert ours.pid in found and len(found) == 2
        assert procs.alive(ours)
        assert procs.power_cut(found) == 2
        deadline = time.monotonic() + 30  # a deadline, not a timing: CI runs this at nice 19 beside the lab tests
        while procs.marked(lab_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert procs.marked(lab_id) == []
        assert other.poll() is None, "a process we did not start was killed"
    finally:
        other.kill()
        other.wait()


def test_a_recycled_pid_is_not_ours():
    p = procs.Proc(pid=os.getpid(), start=-5, site="a", component="x")
    assert not procs.alive(p)


def wait_marked(lab_id, n):
    deadline = time.monotonic() + 30  # a deadline, not a timing: CI runs this at nice 19 beside the lab tests
    while time.monotonic() < deadline:
        found = procs.marked(lab_id)
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return procs.marked(lab_id)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory others cannot enter")
def test_a_home_the_lab_user_cannot_reach_moves_under_var_lib():
    import shutil

    from firebreak.lab import runtime
    from tests.conftest import ROOT

    base = ROOT / ".firebreak" / "test-reach"
    shutil.rmtree(base, ignore_errors=True)
    open_dir = base / "open"
    open_dir.mkdir(parents=True)
    closed = base / "closed"
    closed.mkdir()
    os.chmod(closed, 0o700)
    home = closed / ".firebreak" / "lab"
    user = (65534, 65534)  # nobody
    real = runtime.reachable_home(home, user)
    try:
        assert real != home and str(real).startswith("/var/lib/firebreak/labs/")
        assert home.is_symlink() and home.resolve() == real
        assert runtime._traversable(real, user[0])
        assert runtime.reachable_home(open_dir, user) == open_dir  # reachable: left alone
        stranger = closed / "data"
        stranger.mkdir()
        (stranger / "precious.txt").write_text("not the lab's")
        with pytest.raises(LabError):
            runtime.reachable_home(stranger, user)
        assert (stranger / "precious.txt").exists()
    finally:
        shutil.rmtree(real, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _site(state="up", role="replica", pg="streaming"):
    return {"state": state, "postgres": {"role": role, "state": pg}}


@pytest.mark.parametrize("sites,expected", [
    ({"a": _site(role="primary", pg="running"), "b": _site(role="sync_standby"), "c": _site()}, True),
    ({"a": _site(role="primary", pg="running"), "b": _site(role="sync_standby"), "c": _site(pg="starting")}, False),
    ({"a": _site(role="primary", pg="running"), "b": _site(), "c": _site()}, False),              # none synchronous
    ({"a": _site(role="down", pg=None), "b": _site(role="sync_standby"), "c": _site()}, False),   # no primary
    ({"a": _site(role="primary", pg="running"), "b": _site(role="sync_standby"), "c": _site(state="off")}, False),
])
def test_healthy_is_a_pure_test_of_the_observed_sites(sites, expected):
    from firebreak.lab.status import healthy
    assert healthy(sites) is expected


def test_a_power_cut_also_kills_what_was_forked_while_it_froze_the_others(tmp_path):
    """A parent that forks a child as the cut begins: the child, unknown to the first list,
    must be found by the rescan and die too (a PostgreSQL backend that outlived its postmaster
    once kept a site's PostgreSQL from starting again)."""
    import signal as sig

    script = tmp_path / "forker.py"
    script.write_text("import os, time\n"
                      "signal_file = os.environ['FORKED']\n"
                      "pid = os.fork()\n"
                      "if pid == 0:\n"
                      "    open(signal_file, 'w').write(str(os.getpid()))\n"
                      "    time.sleep(60)\n"
                      "    os._exit(0)\n"
                      "time.sleep(60)\n")
    forked = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "FORKED": str(forked)},
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not forked.exists() or not forked.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int(forked.read_text())
        killed = procs.power_cut([parent.pid], rescan=lambda: [child])  # the rescan finds the child
        assert killed == 2
        parent.wait(5)
        deadline = time.monotonic() + 30  # a deadline, not a timing: CI runs this at nice 19 beside the lab tests
        while procs.start_time(child) is not None:
            assert time.monotonic() < deadline, "the forked child survived the power cut"
            time.sleep(0.05)
    finally:
        for pid in (parent.pid,):
            try:
                os.kill(pid, sig.SIGKILL)
            except ProcessLookupError:
                pass


def test_lab_status_names_its_clusters_and_services():
    from firebreak.lab.status import clusters_doc, services_doc

    sites = {"a": {**_site(role="primary", pg="running"), "door": "http://a:1"},
             "b": {**_site(role="sync_standby"), "door": "http://b:1"},
             "c": {**_site(role="down", pg=None), "door": "http://c:1"}}
    assert clusters_doc("claims-db", sites, "postgresql://x") == {"claims-db": {
        "primary": "a", "sync_standby": "b", "members": {"a": "primary", "b": "sync_standby", "c": "down"},
        "dsn": "postgresql://x"}}
    assert services_doc(sites) == {"claims-app": {"sites": ["a", "b", "c"],
                                                  "urls": {"a": "http://a:1", "b": "http://b:1", "c": "http://c:1"}}}


def test_a_lab_state_knows_its_layout_and_its_plan(tmp_path):
    """Every lab command starts from the saved state: its layout and what it runs (a removed
    property once broke `lab up` after the agents had started)."""
    from firebreak.lab.state import LabState
    from tests.conftest import ROOT
    state = LabState("abcd", "netns", str(ROOT / "examples/firebreak-lab.yaml"), ["pangyo", "ansan", "siheung"],
                     tmp_path)
    assert state.layout.names == ["pangyo", "ansan", "siheung"] and state.layout.home == tmp_path
    assert state.plan.clusters[0].name == "claims-db" and not state.plan.estate
    again = LabState.from_json(state.to_json())
    assert again.layout == state.layout and again.plan == state.plan


def test_patroni_runs_quorum_commit_when_the_cluster_asks_for_it_and_failsafe_always():
    from firebreak.lab.plan import default_cluster
    layout = make_layout(Path("/x"), "netns", SITES, "abcd1234")
    access_ = EtcdAccess("/x/pki/ca.pem", "/x/c.pem", "/x/k.pem", "patroni", "pw")
    for replication, mode in (("sync", True), ("quorum", "quorum")):
        cfg = patroni_config(layout, layout.site("ansan"), SECRETS, "/bin", access_,
                             default_cluster(SITES, replication=replication))
        dcs = cfg["bootstrap"]["dcs"]
        assert dcs["synchronous_mode"] == mode and dcs["synchronous_node_count"] == 1
        # etcd gone is no reason to stop writing while every member answers (Patroni's failsafe)
        assert dcs["failsafe_mode"] is True


def test_lab_status_reads_quorum_voters_as_acknowledging_standbys():
    from firebreak.lab.status import healthy_clusters, member_role
    assert member_role({"role": "quorum_standby", "state": "streaming"}, False) == "quorum_standby"
    assert member_role({"role": "leader", "state": "running"}, False) == "primary"
    assert member_role({"role": "replica", "state": "streaming"}, False) == "replica"
    states = {"ansan": "streaming", "siheung": "streaming"}
    voters = {"c": {"primary": "pangyo", "sync_standby": None, "states": states,
                    "members": {"pangyo": "primary", "ansan": "quorum_standby", "siheung": "quorum_standby"}}}
    assert healthy_clusters(voters, {"c": True})
    none = {"c": {**voters["c"], "members": {"pangyo": "primary", "ansan": "replica", "siheung": "replica"}}}
    assert not healthy_clusters(none, {"c": True})


def _members(leader, stopped=(), timeline=3):
    return [{"name": n, "role": "leader" if n == leader else "replica", "timeline": timeline,
             "state": "stopped" if n in stopped else "running" if n == leader else "streaming"}
            for n in ("pangyo", "ansan", "siheung")]


@pytest.mark.parametrize("answers, want", [
    ([], []),
    # A member just back from isolation answers first, from what it knew before (itself
    # streaming); the leader's own answer says it is rewinding.
    ([("pangyo", _members("ansan")), ("ansan", _members("ansan", stopped={"pangyo"})),
      ("siheung", _members("ansan"))], _members("ansan", stopped={"pangyo"})),
    # An isolated old primary still naming itself, first in site order, on the old timeline.
    ([("pangyo", _members("pangyo", timeline=2)), ("siheung", _members("siheung"))], _members("siheung")),
    ([("pangyo", _members("pangyo", timeline=2)), ("ansan", _members("siheung")), ("siheung", _members("siheung"))],
     _members("siheung")),
    # The leader did not answer: the gloomiest answer naming it.
    ([("pangyo", _members("ansan")), ("siheung", _members("ansan", stopped={"siheung"}))],
     _members("ansan", stopped={"siheung"})),
    # A standby cluster's leader counts as its leader.
    ([("pangyo", [{"name": "ansan", "role": "standby_leader"}, {"name": "pangyo", "role": "replica"}]),
      ("ansan", [{"name": "ansan", "role": "standby_leader"}])], [{"name": "ansan", "role": "standby_leader"}]),
    # Nobody names a leader: the first answer.
    ([("pangyo", [{"name": "pangyo", "role": "replica"}]), ("ansan", [])], [{"name": "pangyo", "role": "replica"}]),
])
def test_lab_status_believes_the_leaders_own_view_of_the_cluster(answers, want):
    from firebreak.lab.status import cluster_view
    assert cluster_view(answers) == want
