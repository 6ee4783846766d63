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


@pytest.mark.parametrize("role,key,write,allowed", [
    ("patroni", "/service/firebreak/leader", True, True),
    ("patroni", "/firebreak/views/pangyo", False, False),
    ("agent", "/firebreak/views/pangyo", True, True),
    ("agent", "/service/firebreak/leader", True, True),                 # the failover releases it
    ("agent", "/service/firebreak/members/pangyo", True, True),         # fences a dead member's API
    ("agent", "/service/firebreak/config", True, False),                # but not Patroni's settings
    ("agent", "/service/firebreak/sync", True, False),
    ("agent", "/service/firebreak/sync", False, True),
    ("claims", "/firebreak/ledger/1.000-pangyo", False, True),
    ("claims", "/firebreak/ledger/1.000-pangyo", True, False),
    ("claims", "/firebreak/operators/lab", False, False),
    ("ops", "/firebreak/operators/lab", True, True),
    ("ops", "/firebreak/frozen", True, False),
])
def test_each_role_reaches_only_its_keys(role, key, write, allowed):
    grants = role_grants(Keys(), PatroniKeys("/service/firebreak"))
    assert _allowed(grants[role], key, write) is allowed
