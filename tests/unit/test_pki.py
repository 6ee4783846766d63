"""The PKI's pure decisions as tables (what each host holds, what is due, what etcd must change),
and its files as an operator gets them (real certificates in a temporary directory: renewal keeps
keys, rotation makes new ones, a rollover trusts both CAs, retiring is refused while a certificate
of the old CA remains). etcd itself is in tests/web/test_pki_etcd.py."""

import datetime as dt
import textwrap

import pytest

from firebreak.control.keys import Grant, Keys, PatroniKeys, role_grants
from firebreak.deploy.inventory import load_inventory
from firebreak.errors import FirebreakError, InputError
from firebreak.pki import plan, store, x509
from firebreak.pki.etcd_users import ROOT, Held, Perm, changes
from tests.unit.test_deploy_inventory import CONTRACT

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
SITES = ("gwangju", "daejeon", "busan")


def _inv(tmp_path, admin_on_agents=False):
    p = tmp_path / "inventory.yml"
    text = textwrap.dedent(CONTRACT).lstrip("\n")
    text += f"settings:\n  etcd: {{admin_on_agents: {str(admin_on_agents).lower()}}}\n"
    p.write_text(text)
    return load_inventory(p)


# ---- what each host holds -------------------------------------------------------------------------

HOLDS = [
    # host, the certificates it holds (paths), signed by which CA
    ("gj-db1", {"/etc/firebreak/pki/etcd-member.pem": "client", "/etc/firebreak/pki/etcd-peer.pem": "peer",
                "/etc/firebreak/etcd/patroni/client.pem": "client",
                "/etc/firebreak/etcd/agent-gwangju/client.pem": "client",
                "/etc/firebreak/etcd/ops/client.pem": "client"}),
    ("gj-web1", {"/etc/firebreak/pki/door.pem": "client", "/etc/firebreak/etcd/claims/client.pem": "client"}),
    ("bs-db1", {"/etc/firebreak/pki/etcd-member.pem": "client", "/etc/firebreak/pki/etcd-peer.pem": "peer",
                "/etc/firebreak/etcd/patroni/client.pem": "client",
                "/etc/firebreak/etcd/agent-busan/client.pem": "client",
                "/etc/firebreak/etcd/ops/client.pem": "client"}),
]


@pytest.mark.parametrize("host,want", HOLDS)
def test_each_host_holds_what_its_roles_need(tmp_path, host, want):
    inv = _inv(tmp_path)
    got = {leaf.cert: leaf.ca for leaf in plan.leaves(inv) if leaf.host == host}
    assert got == want


def test_root_only_on_the_operators_machine_and_agents_have_their_own_identity(tmp_path):
    inv = _inv(tmp_path)
    all_leaves = plan.leaves(inv)
    assert not any("/root/" in leaf.cert for leaf in all_leaves if leaf.host != plan.OPERATOR)
    assert [leaf.cert for leaf in all_leaves if leaf.host == plan.OPERATOR] == ["operator/root/client.pem"]
    agents = {leaf.cert.split("/")[-2] for leaf in all_leaves if "/agent-" in leaf.cert}
    assert agents == {f"agent-{s}" for s in SITES}


def test_names_and_uses(tmp_path):
    inv = _inv(tmp_path)
    by = {(leaf.host, leaf.cert): leaf for leaf in plan.leaves(inv)}
    member = by[("dj-db1", "/etc/firebreak/pki/etcd-member.pem")]
    assert member.ips == ("10.20.0.11", "127.0.0.1") and member.server and member.client
    assert member.common_name == "etcd-daejeon" and member.owner == "etcd"
    door = by[("dj-web1", "/etc/firebreak/pki/door.pem")]
    assert door.ips == ("10.20.0.21",) and door.server and not door.client and door.owner == "caddy"
    client = by[("dj-db1", "/etc/firebreak/etcd/agent-daejeon/client.pem")]
    # No common name: etcd would take it for a user name.
    assert client.common_name == "" and client.client and not client.server and client.owner == "firebreak"
    assert by[("dj-db1", "/etc/firebreak/etcd/patroni/client.pem")].owner == "postgres"


def test_bundles_every_host_trusts_the_client_ca_members_the_peer_ca(tmp_path):
    inv = _inv(tmp_path)
    got = {(b.host, b.path) for b in plan.bundles(inv)}
    assert ("gj-web1", "/etc/firebreak/pki/ca.pem") in got and ("gj-web1", plan.PEER_CA) not in got
    assert ("gj-db1", plan.PEER_CA) in got and ("", "operator/ca.pem") in got
    assert [h.name for h in plan.token_hosts(inv)] == ["gj-db1", "dj-db1", "bs-db1"]


def test_root_on_agents_is_refused_naming_the_field(tmp_path):
    with pytest.raises(InputError) as e:
        plan.check_inventory(_inv(tmp_path, admin_on_agents=True))
    assert "settings.etcd.admin_on_agents" in str(e.value.problems[0])


# ---- what is due ----------------------------------------------------------------------------------

LEAF = plan.Leaf("h", "/c.pem", "/k.pem", "client", "", ("10.0.0.1",), ("x.invalid",), False, True, "u")
SIGNER = "aa" * 20


def _facts(**kw):
    base = dict(subject_cn="", not_before=NOW - dt.timedelta(days=10), not_after=NOW + dt.timedelta(days=200),
                ips=frozenset({"10.0.0.1"}), dns=frozenset({"x.invalid"}), server=False, client=True, is_ca=False,
                key_id="", issuer_key_id=SIGNER, serial=1, key_matches=True)
    return x509.Facts(**{**base, **kw})


DUE = [
    ("fine", _facts(), None),
    ("missing", None, "missing"),
    ("key of another", _facts(key_matches=False), "key file"),
    ("another CA", _facts(issuer_key_id="bb" * 20), "signed by another CA"),
    ("address changed", _facts(ips=frozenset({"10.0.0.2"})), "differ from the inventory's [10.0.0.1, x.invalid]"),
    ("usage", _facts(server=True), "usage server+client differs from client"),
    ("common name", _facts(subject_cn="root"), "common name 'root'"),
    ("expired", _facts(not_after=NOW - dt.timedelta(seconds=1)), "expired on 2029-12-31"),
    ("inside the threshold", _facts(not_after=NOW + dt.timedelta(days=29)), "in 29 day(s)"),
    ("on the threshold", _facts(not_after=NOW + dt.timedelta(days=30)), "in 30 day(s)"),
    ("just outside", _facts(not_after=NOW + dt.timedelta(days=30, seconds=1)), None),
]


@pytest.mark.parametrize("case,have,why", DUE, ids=[c[0] for c in DUE])
def test_due(case, have, why):
    got = plan.due(LEAF, have, now=NOW, within=dt.timedelta(days=30), signer_key_id=SIGNER)
    assert (got is None) if why is None else (why in got), got


def test_a_ca_near_its_end_asks_for_a_rollover():
    assert plan.ca_due(NOW + dt.timedelta(days=5), now=NOW, within=dt.timedelta(days=30), kind="peer").endswith(
        "start a rollover (firebreak pki rotate --ca peer)")
    assert plan.ca_due(NOW + dt.timedelta(days=90), now=NOW, within=dt.timedelta(days=30), kind="peer") is None


def test_retire_blockers():
    assert plan.retire_blockers({"a": "old", "b": "new", "c": "old"}, "old") == ["a", "c"]
    assert plan.retire_blockers({"b": "new"}, "old") == []


# ---- etcd's users and roles: the difference -----------------------------------------------------

WANT = {"patroni": (Grant("/service/x/", True, "READWRITE"),),
        "agent-a": (Grant("/firebreak/", True, "READ"), Grant("/firebreak/views/a", False, "READWRITE"))}
RIGHT = {"patroni": frozenset({Perm("/service/x/", "/service/x0", "READWRITE")}),
         "agent-a": frozenset({Perm("/firebreak/", "/firebreak0", "READ"),
                               Perm("/firebreak/views/a", "", "READWRITE")})}
USERS = {ROOT: frozenset({ROOT}), "patroni": frozenset({"patroni"}), "agent-a": frozenset({"agent-a"})}
OK = {u: True for u in USERS}

CHANGES = [
    ("empty etcd", Held(False, {}, {}, {}),
     ["role_add patroni", "role_grant patroni: READWRITE /service/x/*", "role_add agent-a",
      "role_grant agent-a: READ /firebreak/*", "role_grant agent-a: READWRITE /firebreak/views/a",
      "user_add root", "user_grant root root", "user_add patroni", "user_grant patroni patroni",
      "user_add agent-a", "user_grant agent-a agent-a", "auth_enable root"]),
    ("all in place", Held(True, RIGHT, USERS, OK), []),
    ("a grant too wide is narrowed", Held(True, {**RIGHT, "agent-a": RIGHT["agent-a"] | {
        Perm("/firebreak/views/", "/firebreak/views0", "READWRITE")}}, USERS, OK),
     ["role_revoke agent-a: READWRITE /firebreak/views/*"]),
    ("a wrong password is set again", Held(True, RIGHT, USERS, {**OK, "patroni": False}), ["password patroni"]),
    ("auth off: passwords cannot be checked, so they are set", Held(False, RIGHT, USERS, {u: None for u in USERS}),
     ["password root", "password patroni", "password agent-a", "auth_enable root"]),
    ("an extra role on a user is revoked", Held(True, RIGHT, {**USERS, "agent-a": frozenset({"agent-a", "ops"})}, OK),
     ["user_revoke_role agent-a ops"]),
]


@pytest.mark.parametrize("case,held,want", CHANGES, ids=[c[0] for c in CHANGES])
def test_changes(case, held, want):
    todo, _ = changes(WANT, held)
    assert [c.describe() for c in todo] == want


def test_users_beyond_the_list_are_reported_not_deleted():
    todo, notes = changes(WANT, Held(True, RIGHT, {**USERS, "agent-gone": frozenset({"agent-gone"})}, OK))
    assert todo == [] and "etcdctl user delete agent-gone" in notes[0]


def test_every_role_of_role_grants_round_trips_through_perm():
    grants = role_grants(Keys(), (PatroniKeys.of("a"),), sites=SITES)
    users = {ROOT: frozenset({ROOT}), **{r: frozenset({r}) for r in grants}}
    held = Held(True, {r: frozenset(Perm.of(g) for g in gs) for r, gs in grants.items()}, users,
                {u: True for u in users})
    assert changes(grants, held) == ([], [])


# ---- real files -------------------------------------------------------------------------------------

@pytest.fixture
def estate(tmp_path):
    inv = _inv(tmp_path)
    s = store.Store(tmp_path / "pki", tmp_path / "out")
    store.init(s, now=NOW, days=3650, name="Test")
    o = store.issue(s, plan.leaves(inv), now=NOW, days=365, within=dt.timedelta(0))
    store.distribute(s, plan.bundles(inv), [h.name for h in plan.token_hosts(inv)], "root-password-xxxxxxxx")
    return inv, s, o


def _read(s, leaf):
    return s.at(leaf.host, leaf.cert).read_bytes(), s.at(leaf.host, leaf.key).read_bytes()


def test_issue_writes_keys_0600_never_a_ca_key_on_a_host_and_a_second_run_changes_nothing(estate, tmp_path):
    inv, s, o = estate
    assert len(o.issued) == len(plan.leaves(inv))
    hosts = tmp_path / "out"
    for p in hosts.rglob("*-key.pem"):
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert not any("ca-key" in p.name for p in hosts.rglob("*"))
    assert (s.pki.stat().st_mode & 0o777) == 0o700 and s.ca_key("client").stat().st_mode & 0o777 == 0o600
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    again = store.issue(s, plan.leaves(inv), now=NOW, days=365, within=dt.timedelta(0))
    d = store.distribute(s, plan.bundles(inv), [h.name for h in plan.token_hosts(inv)], "root-password-xxxxxxxx")
    assert again.issued == {} and d.written == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()} == before


def test_certificates_are_signed_by_their_ca_with_the_inventorys_names(estate):
    inv, s, _ = estate
    for leaf in plan.leaves(inv):
        cert, key = _read(s, leaf)
        assert x509.signed_by(cert, s.signer(leaf.ca).cert_pem), leaf.name
        assert not x509.signed_by(cert, s.signer("peer" if leaf.ca == "client" else "client").cert_pem)
        f = x509.facts(cert, leaf.name, key)
        assert f.key_matches and f.ips == set(leaf.ips) and f.dns == set(leaf.dns)


def test_renew_keeps_the_key_rotate_makes_a_new_one(estate):
    inv, s, _ = estate
    leaves = plan.leaves(inv)
    later = NOW + dt.timedelta(days=340)  # 25 days left: inside the 30-day threshold
    before = {leaf.name: _read(s, leaf) for leaf in leaves}
    o = store.issue(s, leaves, now=later, days=365, within=dt.timedelta(days=30))
    assert set(o.issued) == {leaf.name for leaf in leaves} and all("in 25 day(s)" in w for w in o.issued.values())
    for leaf in leaves:
        cert, key = _read(s, leaf)
        assert key == before[leaf.name][1] and cert != before[leaf.name][0]
    o = store.issue(s, leaves, now=later, days=365, within=dt.timedelta(0), rotate=True)
    assert set(o.issued) == {leaf.name for leaf in leaves}
    for leaf in leaves:
        cert, key = _read(s, leaf)
        assert key != before[leaf.name][1] and x509.facts(cert, leaf.name, key).key_matches


def test_an_address_change_reissues_that_hosts_certificates_only(estate, tmp_path):
    inv, s, _ = estate
    p = tmp_path / "inventory.yml"
    p.write_text(p.read_text().replace("10.20.0.11", "10.20.0.12"))
    moved = load_inventory(p)
    o = store.issue(s, plan.leaves(moved), now=NOW, days=365, within=dt.timedelta(0))
    assert set(o.issued) == {"dj-db1:/etc/firebreak/pki/etcd-member.pem", "dj-db1:/etc/firebreak/pki/etcd-peer.pem"}


def test_rollover_trusts_both_then_resigns_then_retires(estate):
    inv, s, _ = estate
    leaves = plan.leaves(inv)
    old = s.signer("client").cert_pem
    store.begin_rollover(s, "client", now=NOW, days=3650, name="Test")
    with pytest.raises(InputError):
        store.begin_rollover(s, "client", now=NOW, days=3650, name="Test")
    store.distribute(s, plan.bundles(inv), [], None)
    bundle = s.at("gj-web1", "/etc/firebreak/pki/ca.pem").read_bytes()
    assert len(x509.load_certs(bundle, "bundle")) == 2 and old in bundle
    # Nothing is re-signed yet, and nothing may be retired while the old CA's certificates remain.
    with pytest.raises(FirebreakError, match="still signed by the retiring client CA"):
        store.retire(s, "client", leaves)
    o = store.issue(s, leaves, now=NOW, days=365, within=dt.timedelta(0))
    assert {leaf.name for leaf in leaves if leaf.ca == "client"} == set(o.issued)  # "signed by another CA"
    store.retire(s, "client", leaves)
    store.distribute(s, plan.bundles(inv), [], None)
    bundle = s.at("gj-web1", "/etc/firebreak/pki/ca.pem").read_bytes()
    assert old not in bundle and len(x509.load_certs(bundle, "bundle")) == 1
    # The peer CA was left alone.
    assert len(x509.load_certs(s.at("gj-db1", plan.PEER_CA).read_bytes(), "bundle")) == 1


def test_write_atomic_never_leaves_a_temporary_file(tmp_path):
    p = tmp_path / "d" / "f.pem"
    assert store.write_atomic(p, b"one", 0o600) is True
    assert store.write_atomic(p, b"one", 0o600) is False
    assert store.write_atomic(p, b"one", 0o644) is True and p.stat().st_mode & 0o777 == 0o644
    assert [q.name for q in p.parent.iterdir()] == ["f.pem"]
