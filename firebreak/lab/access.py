"""The lab's locked etcd: a CA per lab, TLS on every client and peer link, a client certificate
and an etcd user per role, each with the narrowest permissions that work (control/keys.py's
role_grants), and authentication on. Each site's agent has its own user, `agent-<site>`, that may
write its own view and no other site's; operators' writes (frozen, drained, releases, operators,
the audit log) are the `ops` user's, which each console uses for them.

On disk, under the lab's home:

    pki/ca.pem                                   the lab's CA certificate (its key is never written)
    sites/<site>/etcd-tls/member{,-key}.pem      each member's server-and-peer certificate
    sites/<site>/door-tls/door.pem{,.key}        each front door's HTTPS certificate
    access/<role>/client{,-key}.pem, password    each role's client certificate, key and password
                                                 (roles: root, patroni, agent-<site> for each site,
                                                 claims, ops)
    access/<role>/access.json                    where those are, for EtcdAccess.from_file

Keys and passwords are mode 0600, owned by the lab's user. `firebreak lab status --json` lists
them under `etcd_access`, so etcdctl can be pointed at them.
"""

from __future__ import annotations

import json
import secrets as pysecrets

from firebreak.control.etcd import Etcd, EtcdAccess
from firebreak.control.keys import OPS_ROLE, PATRONI_NAMESPACE, Keys, PatroniKeys, agent_role, role_grants
from firebreak.lab import pki
from firebreak.lab.layout import SCOPE, LabLayout
from firebreak.lab.state import write_private

ROOT = "root"          # etcd's administrator: lab set-up, drills (checks, declarations), agents' maintenance
# The roles every lab has; beside them, one `agent-<site>` per site (roles()).
ROLES = (ROOT, "patroni", "claims", OPS_ROLE)


def roles(layout: LabLayout) -> tuple[str, ...]:
    """Every etcd role (and user) of this lab: root, patroni, each site's agent, claims, ops."""
    return (ROOT, "patroni", *(agent_role(s) for s in layout.names), "claims", OPS_ROLE)


def load(layout: LabLayout, role: str) -> EtcdAccess:
    return EtcdAccess.from_file(layout.access_file(role))


def prepare(layout: LabLayout) -> None:
    """Make the CA, the members' certificates and every role's credentials (before etcd starts)."""
    ca = pki.make_ca(f"Firebreak lab {layout.lab_id} CA")
    tokens = pki.token_keys()
    layout.ca_file.parent.mkdir(parents=True, exist_ok=True)
    layout.ca_file.write_bytes(ca.cert_pem)
    # Kept (owner-only) so the lab's certificates can be renewed and rotated while it runs, as a
    # real site's are (firebreak pki; tests/lab/test_pki_rotation_e2e.py).
    write_private(layout.ca_file.with_name("ca-key.pem"), ca.key_pem.decode())
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
    for role in roles(layout):
        d = layout.access_dir(role)
        d.mkdir(parents=True, exist_ok=True)
        pki.write(pki.issue(ca, "", dns=[f"{role}.firebreak.invalid"]), d / "client.pem", d / "client-key.pem")
        write_private(d / "password", pysecrets.token_urlsafe(24))
        (d / "access.json").write_text(json.dumps({
            "ca": "../../pki/ca.pem", "cert": "client.pem", "key": "client-key.pem",
            "user": role, "password_file": "password"}, indent=2))


async def lock(layout: LabLayout, scopes: list[str] | None = None, discover: bool = False,
               endpoints: list[str] | None = None) -> None:
    """Create the roles and users and turn authentication on (etcd is up, still open). `scopes`:
    the Patroni clusters; with `discover`, the agents read all of /service/ to find them.
    `endpoints`: etcd's client URLs when not the layout's own (a test's single member)."""
    root = load(layout, ROOT)
    # Before authentication is on, the root user cannot log in yet: talk TLS without a user.
    etcd = Etcd(endpoints or layout.etcd_endpoints, timeout=5, patience=5,
                access=EtcdAccess(root.ca, root.cert, root.key))
    try:
        await etcd.user_add(ROOT, root.password)
        await etcd.user_grant_role(ROOT, "root")
        clusters = tuple(PatroniKeys.of(scope) for scope in (scopes or [SCOPE]))
        grants_of = role_grants(Keys(), clusters, (PATRONI_NAMESPACE,) if discover else (), sites=layout.names)
        for role, grants in grants_of.items():
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


# What each role may write, in words, for `lab status` (the grants themselves: role_grants).
WRITES = {
    ROOT: ("everything, etcd's maintenance calls (defragment, move-leader), and the drills' declarations "
           "(/firebreak/drills/<site>, written by the drill runner, root's alone)"),
    "patroni": "its clusters' namespaces, /service/<scope>/",
    "agent-<site>": ("its own site's view (/firebreak/views/<site>), /firebreak/coordinator, /firebreak/ledger/, and "
                     "each cluster's /service/<scope>/leader and members/; reads all of /firebreak/ and Patroni's"),
    "claims": "nothing (reads /firebreak/ledger/)",
    OPS_ROLE: ("/firebreak/frozen, drained/, operators/, releases/, release/current and audit-log/ "
               "(operators' actions, through a console or firebreak ops)"),
}


def status_doc(layout: LabLayout) -> dict:
    """What `lab status --json` says about the locked etcd: where the CA and each role's
    credentials are (each site's agent its own, `agent-<site>`; `agents` maps site to role), what
    each role may write, and the etcdctl command line that uses root's."""
    found = {}
    for role in roles(layout):
        d = layout.access_dir(role)
        found[role] = {"access_file": str(d / "access.json"), "user": role, "cert": str(d / "client.pem"),
                       "key": str(d / "client-key.pem"), "password_file": str(d / "password"),
                       "writes": WRITES.get(role, WRITES["agent-<site>"] if role.startswith("agent-") else "")}
    r = found[ROOT]
    return {
        "tls": True, "auth": True, "ca": str(layout.ca_file), "roles": found,
        "agents": {s: agent_role(s) for s in layout.names},
        "etcdctl": (f"etcdctl --endpoints {','.join(layout.etcd_endpoints)} --cacert {layout.ca_file} --cert {r['cert']} "
                    f"--key {r['key']} --user {ROOT}:\"$(cat {r['password_file']})\""),
    }
