"""A locked etcd, without processes: the lab's certificates, access files, and the roles'
grants (who may touch which key)."""

import json

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from firebreak.control.etcd import EtcdAccess, EtcdError
from firebreak.control.keys import Keys, PatroniKeys, role_grants
from firebreak.lab import pki


def test_leaf_certificates_are_signed_by_the_lab_ca_and_clients_carry_no_common_name():
    ca = pki.make_ca("lab CA")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    member = x509.load_pem_x509_certificate(pki.issue(ca, "pangyo", ips=["10.77.0.11"], server=True).cert_pem)
    client = x509.load_pem_x509_certificate(pki.issue(ca, "", dns=["agent.firebreak.invalid"]).cert_pem)
    for leaf in (member, client):
        leaf.verify_directly_issued_by(ca_cert)
    eku = member.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)  # peers dial each other
    san = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.77.0.11"]
    # etcd's JSON gateway refuses a client certificate with a common name
    assert list(client.subject) == []
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_keys_are_written_owner_only(tmp_path):
    issued = pki.issue(pki.make_ca("lab CA"), "")
    pki.write(issued, tmp_path / "c.pem", tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pem").read_bytes() == issued.key_pem


def test_access_file_paths_are_relative_to_it_and_the_password_is_read_from_its_file(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "a.json").write_text(json.dumps({"ca": "ca.pem", "cert": "c.pem", "key": "k.pem", "user": "agent",
                                                 "password_file": "pw"}))
    a = EtcdAccess.from_file(tmp_path / "a.json")
    assert a == EtcdAccess(str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), "agent", "s3cret")


@pytest.mark.parametrize("content,needle", [(None, "No such file"), ("{not json", "Expecting"),
                                            ('{"user": "a", "password_file": "missing"}', "missing")])
def test_a_bad_access_file_names_itself_and_what_it_should_hold(tmp_path, content, needle):
    path = tmp_path / "a.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EtcdError) as e:
        EtcdAccess.from_file(path)
    assert str(path) in str(e.value) and needle in str(e.value) and "password_file" in str(e.value)


def _allowed(grants, key: str, write: bool) -> bool:
    for g in grants:
        covers = key.startswith(g.key) if g.prefix else key == g.key
        if covers and (g.perm == "READWRITE" or g.perm == ("WRITE" if write else "READ")):
            return True
    return False


SITES = ("pangyo", "ansan", "siheung")

# role, key, write, allowed: the one table of who may touch what. tests/web/test_etcd_roles.py
# asks a real etcd, locked by the lab's own code, the same questions.
CASES = [
    ("patroni", "/service/firebreak/leader", True, True),
    ("patroni", "/firebreak/views/pangyo", False, False),
    ("patroni", "/firebreak/frozen", True, False),
    # Each site's agent: its own view, the coordinator, the ledger, and what the failover rewrites.
    ("agent-pangyo", "/firebreak/views/pangyo", True, True),
    ("agent-pangyo", "/firebreak/views/ansan", True, False),            # no speaking for another site
    ("agent-pangyo", "/firebreak/views/ansan", False, True),            # but reading every view
    ("agent-pangyo", "/firebreak/views/pangyo-2", True, False),         # its view is one key, not a prefix
    ("agent-ansan", "/firebreak/views/ansan", True, True),
    ("agent-ansan", "/firebreak/views/pangyo", True, False),
    ("agent-pangyo", "/firebreak/coordinator", True, True),
    ("agent-pangyo", "/firebreak/ledger/1.000-ansan", True, True),      # the coordinator records outages
    ("agent-pangyo", "/service/firebreak/leader", True, True),          # the failover releases it
    ("agent-pangyo", "/service/firebreak/members/ansan", True, True),   # fences a dead member's API
    ("agent-pangyo", "/service/firebreak/history", True, True),         # fences a released primary's timeline
    ("agent-pangyo", "/service/firebreak/config", True, False),         # but not Patroni's settings
    ("agent-pangyo", "/service/firebreak/sync", True, False),
    ("agent-pangyo", "/service/firebreak/sync", False, True),
    # ... and nothing operators decide, though it reads all of it.
    ("agent-pangyo", "/firebreak/frozen", True, False),
    ("agent-pangyo", "/firebreak/frozen", False, True),
    ("agent-pangyo", "/firebreak/drained/ansan", True, False),
    ("agent-pangyo", "/firebreak/operators/x", True, False),
    ("agent-pangyo", "/firebreak/operators/x", False, True),            # the console checks tokens with it
    ("agent-pangyo", "/firebreak/releases/1.0", True, False),
    ("agent-pangyo", "/firebreak/release/current", True, False),
    ("agent-pangyo", "/firebreak/audit-log/x", True, False),
    ("agent-pangyo", "/firebreak/audit-log/x", False, True),
    # A declared drill makes the outages recorded during it rehearsals nobody is paid for: only
    # root (the drill runner's identity) declares one; the coordinator reads it.
    ("agent-pangyo", "/firebreak/drills/pangyo", True, False),
    ("agent-pangyo", "/firebreak/drills/ansan", False, True),
    ("ops", "/firebreak/drills/pangyo", True, False),
    ("claims", "/firebreak/drills/pangyo", True, False),
    ("claims", "/firebreak/ledger/1.000-pangyo", False, True),
    ("claims", "/firebreak/ledger/1.000-pangyo", True, False),
    ("claims", "/firebreak/operators/lab", False, False),
    # Operators: what people decide, and the record of it; nothing the control loops write.
    ("ops", "/firebreak/frozen", True, True),
    ("ops", "/firebreak/drained/ansan", True, True),
    ("ops", "/firebreak/operators/lab", True, True),
    ("ops", "/firebreak/releases/1.0", True, True),
    ("ops", "/firebreak/release/current", True, True),
    ("ops", "/firebreak/audit-log/x", True, True),
    ("ops", "/firebreak/views/pangyo", True, False),
    ("ops", "/firebreak/coordinator", True, False),
    ("ops", "/firebreak/ledger/1.000-pangyo", True, False),
    ("ops", "/service/firebreak/leader", True, False),
]


@pytest.mark.parametrize("role,key,write,allowed", CASES)
def test_each_role_reaches_only_its_keys(role, key, write, allowed):
    grants = role_grants(Keys(), PatroniKeys("/service/firebreak"), sites=SITES)
    assert _allowed(grants[role], key, write) is allowed


def test_every_site_has_its_own_agent_role_and_no_shared_one():
    grants = role_grants(Keys(), PatroniKeys("/service/firebreak"), sites=SITES)
    assert set(grants) == {"patroni", "claims", "ops"} | {f"agent-{s}" for s in SITES}
    for site in SITES:
        written = {g.key for g in grants[f"agent-{site}"] if "WRITE" in g.perm and g.key.startswith("/firebreak/")}
        assert written == {f"/firebreak/views/{site}", "/firebreak/coordinator", "/firebreak/ledger/"}


def test_without_sites_one_shared_agent_role_may_write_every_view():
    """For callers that do not know the sites; what the lab and DEPLOY.md use names them."""
    grants = role_grants(Keys(), PatroniKeys("/service/firebreak"))
    assert _allowed(grants["agent"], "/firebreak/views/anything", True)
    assert not _allowed(grants["agent"], "/firebreak/frozen", True)


def test_the_lab_writes_one_identity_per_sites_agent_and_each_agent_config_points_at_its_own(tmp_path):
    from firebreak.lab import access
    from firebreak.lab.config import Secrets, agent_config
    from firebreak.lab.layout import LabLayout, SiteLayout

    sites = tuple(SiteLayout(n, i, f"127.0.{11 + i}.1", tmp_path / "sites" / n, None) for i, n in enumerate(SITES))
    layout = LabLayout(tmp_path, "loopback", sites, "t")
    access.prepare(layout)
    expected = {"root", "patroni", "claims", "ops"} | {f"agent-{s}" for s in SITES}
    doc = access.status_doc(layout)
    assert set(doc["roles"]) == expected and doc["agents"] == {s: f"agent-{s}" for s in SITES}
    assert set(doc["roles"]) == set(role_grants(Keys(), PatroniKeys(), sites=SITES)) | {"root"}
    for role, d in doc["roles"].items():
        assert EtcdAccess.from_file(d["access_file"]).user == role
        for secret in (d["key"], d["password_file"]):
            assert (tmp_path / secret).stat().st_mode & 0o777 == 0o600, secret
    assert "views/<site>" in doc["roles"]["agent-ansan"]["writes"] and "frozen" in doc["roles"]["ops"]["writes"]
    for site in sites:
        cfg = agent_config(layout, site, Secrets("s", "r", "a", "t"))
        assert cfg["etcd_access"] == doc["roles"][f"agent-{site.name}"]["access_file"]
        assert cfg["etcd_ops_access"] == doc["roles"]["ops"]["access_file"]
        assert cfg["etcd_admin_access"] == doc["roles"]["root"]["access_file"]


def test_a_console_without_the_operators_identity_names_the_setting(tmp_path):
    from firebreak.control.actions import Context
    from firebreak.control.config import AgentConfig
    from firebreak.errors import Denied

    base = {"site": "pangyo", "listen": "127.0.0.1:1", "etcd": ["https://127.0.0.1:2"],
            "sites": {s: {c: "http://127.0.0.1:9" for c in ("etcd", "patroni", "app", "agent")} for s in SITES}}
    assert AgentConfig.model_validate(base).ops_access() is not None      # an open etcd: no identities at all
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "a.json").write_text(json.dumps({"user": "agent-pangyo", "password_file": "pw"}))
    locked = AgentConfig.model_validate({**base, "etcd_access": str(tmp_path / "a.json")})
    assert locked.ops_access() is None
    with pytest.raises(Denied) as e:
        Context(None, None, None, None).writer()
    assert e.value.status == 503 and "etcd_ops_access" in e.value.message
