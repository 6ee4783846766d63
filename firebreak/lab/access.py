"""The lab's locked etcd: a CA per lab, TLS on every client and peer link, a client certificate
and an etcd user per role, each with the narrowest permissions that work (control/keys.py's
role_grants), and authentication on.

On disk, under the lab's home:

    pki/ca.pem                                   the lab's CA certificate (its key is never written)
    sites/<site>/etcd-tls/member{,-key}.pem      each member's server-and-peer certificate
    sites/<site>/door-tls/door{,-key}.pem        each front door's HTTPS certificate
    access/<role>/client{,-key}.pem, password    each role's client certificate, key and password
    access/<role>/access.json                    where those are, for EtcdAccess.from_file

Keys and passwords are mode 0600, owned by the lab's user. `firebreak lab status --json` lists
them under `etcd_access`, so etcdctl can be pointed at them.
"""

from __future__ import annotations

import json
import secrets as pysecrets

from firebreak.control.etcd import Etcd, EtcdAccess
from firebreak.control.keys import Keys, PatroniKeys, role_grants
from firebreak.lab import pki
from firebreak.lab.layout import SCOPE, LabLayout
from firebreak.lab.state import write_private

ROOT = "root"          # etcd's administrator: lab set-up, drills' consistency checks, agents' maintenance
ROLES = (ROOT, "patroni", "agent", "claims", "ops")


def load(layout: LabLayout, role: str) -> EtcdAccess:
    return EtcdAccess.from_file(layout.access_file(role))


def prepare(layout: LabLayout) -> None:
    """Make the CA, the members' certificates and every role's credentials (before etcd starts)."""
    ca = pki.make_ca(f"Firebreak lab {layout.lab_id} CA")
    tokens = pki.token_keys()
    layout.ca_file.parent.mkdir(parents=True, exist_ok=True)
    layout.ca_file.write_bytes(ca.cert_pem)
    for site in layout.sites:
        cert, key = site.etcd_member_cert
        cert.parent.mkdir(parents=True, exist_ok=True)
        # Peers dial each other with the same certificate: server and client use.
        pki.write(pki.issue(ca, site.name, ips=[site.address, "127.0.0.1"], server=True), cert, key)
        pki.write(tokens, *site.etcd_token_keys)
        # The same CA signs each site's front door, which serves HTTPS beside HTTP (reviewers'
        # session cookies are Secure): one CA for a client to trust in the whole lab.
        cert, key = site.door_cert
        cert.parent.mkdir(parents=True, exist_ok=True)
        pki.write(pki.issue(ca, f"door.{site.name}", ips=[site.address], server=True, client=False), cert, key)
    for role in ROLES:
        d = layout.access_dir(role)
        d.mkdir(parents=True, exist_ok=True)
        pki.write(pki.issue(ca, "", dns=[f"{role}.firebreak.invalid"]), d / "client.pem", d / "client-key.pem")
        write_private(d / "password", pysecrets.token_urlsafe(24))
        (d / "access.json").write_text(json.dumps({
            "ca": "../../pki/ca.pem", "cert": "client.pem", "key": "client-key.pem",
            "user": role, "password_file": "password"}, indent=2))


async def lock(layout: LabLayout, scopes: list[str] | None = None, discover: bool = False) -> None:
    """Create the roles and users and turn authentication on (etcd is up, still open). `scopes`:
    the Patroni clusters; with `discover`, the agents read all of /service/ to find them."""
    root = load(layout, ROOT)
    # Before authentication is on, the root user cannot log in yet: talk TLS without a user.
    etcd = Etcd(layout.etcd_endpoints, timeout=5, patience=5,
                access=EtcdAccess(root.ca, root.cert, root.key))
    try:
        await etcd.user_add(ROOT, root.password)
        await etcd.user_grant_role(ROOT, "root")
        clusters = tuple(PatroniKeys(f"/service/{scope}") for scope in (scopes or [SCOPE]))
        for role, grants in role_grants(Keys(), clusters, ("/service/",) if discover else ()).items():
            await etcd.role_add(role)
            for g in grants:
                await etcd.role_grant(role, g.key, prefix=g.prefix, perm=g.perm)
            await etcd.user_add(role, load(layout, role).password)
            await etcd.user_grant_role(role, role)
        await etcd.auth_enable()
    finally:
        await etcd.close()


def client(layout: LabLayout, role: str = ROOT, **kw) -> Etcd:
    return Etcd(layout.etcd_endpoints, access=load(layout, role), **kw)


def etcdctl_flags(layout: LabLayout, role: str = ROOT) -> list[str]:
    """etcdctl's flags to act as `role` (the password read from its file)."""
    a = load(layout, role)
    return ["--cacert", a.ca, "--cert", a.cert, "--key", a.key, "--user", f"{a.user}:{a.password}"]


def status_doc(layout: LabLayout) -> dict:
    """What `lab status --json` says about the locked etcd: where the CA and each role's
    credentials are, and the etcdctl command line that uses them."""
    roles = {}
    for role in ROLES:
        d = layout.access_dir(role)
        roles[role] = {"access_file": str(d / "access.json"), "user": role, "cert": str(d / "client.pem"),
                       "key": str(d / "client-key.pem"), "password_file": str(d / "password")}
    r = roles[ROOT]
    return {
        "tls": True, "auth": True, "ca": str(layout.ca_file), "roles": roles,
        "etcdctl": (f"etcdctl --endpoints {','.join(layout.etcd_endpoints)} --cacert {layout.ca_file} --cert {r['cert']} "
                    f"--key {r['key']} --user {ROOT}:\"$(cat {r['password_file']})\""),
    }
