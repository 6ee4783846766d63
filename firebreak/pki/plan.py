"""What an estate's PKI must hold, and what is due: pure functions of the inventory and of what the
certificates on disk say (x509.Facts), tested as tables without a file or a process.

Two CAs, not one CA with an allowed-CN rule:

- the client CA signs what clients and servers show each other on etcd's client port (each
  member's server certificate, every role's client certificate) and the front doors' HTTPS
  certificates;
- the peer CA signs only the members' peer certificates, and the peer port trusts only it.

etcd's `--peer-cert-allowed-cn` would also keep a client certificate off the raft port, but by a
string match: one certificate issued by hand with that name (or a role someday named like it)
and a client host could speak raft. With a peer CA, no certificate that reaches a client host
can ever be a peer, whatever its names, and each CA rolls over on its own schedule. The cost is
one more CA file on etcd hosts (`peer-ca.pem`) and one more certificate per member.

Where each file goes is the renderer's choice (deploy/render.py: CA, PEER_CA, PKI, access_dir,
host_etcd_roles, role_owner): the files pki writes are the ones the rendered files reference.

etcd's root identity is never planned for a host: it is the operator's, for bootstrapping the
users (`pki users`) on the operator's machine (issue 30: "the etcd root identity is not on agent
hosts").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from firebreak.deploy.inventory import Host, Inventory
from firebreak.deploy.render import (CA, PEER_CA, PKI, USERS, access_dir, door_key, host_etcd_roles, role_owner,
                                     role_user)
from firebreak.deploy.secrets import ROOT_ROLE
from firebreak.errors import InputError, Problem

CAKind = Literal["client", "peer"]
CA_KINDS: tuple[CAKind, ...] = ("client", "peer")

MEMBER = (f"{PKI}/etcd-member.pem", f"{PKI}/etcd-member-key.pem")
PEER = (f"{PKI}/etcd-peer.pem", f"{PKI}/etcd-peer-key.pem")
TOKEN = (f"{PKI}/etcd-token.pem", f"{PKI}/etcd-token-key.pem")
DOOR = f"{PKI}/door.pem"   # its key: deploy.render.door_key (where the door's proxy looks for it)
OPERATOR = ""          # Leaf.host of what stays on the operator's machine
OPERATOR_ROLES = (ROOT_ROLE,)

# Defaults: a leaf lives a year and is renewed in its last month; a CA lives ten years (its
# rollover is a planned change with restarts, see docs/PKI.md).
LEAF_DAYS = 365
CA_DAYS = 3650
RENEW_WITHIN_DAYS = 30


@dataclass(frozen=True)
class Leaf:
    """One certificate to hold: on `host` (OPERATOR: the operator's PKI directory) at `cert`,
    its key at `key` (mode 0600, owned by `owner` on the host), signed by the `ca` CA."""
    host: str
    cert: str
    key: str
    ca: CAKind
    common_name: str
    ips: tuple[str, ...]
    dns: tuple[str, ...]
    server: bool
    client: bool
    owner: str

    @property
    def name(self) -> str:
        return f"{self.host or 'operator'}:{self.cert}"


@dataclass(frozen=True)
class Bundle:
    """A CA file a host trusts (every CA of that kind the estate trusts now: two during a rollover)."""
    host: str
    path: str
    ca: CAKind


def client_dns(role: str) -> str:
    """A client certificate names its role in a SAN, never in its common name: with client
    certificate authentication etcd takes a certificate's CN as the user a request acts as when it
    carries no token, and its JSON gateway refuses client certificates that have one. Who a client
    is comes from the etcd user it logs in as; the SAN only says which file this is."""
    return f"{role}.firebreak.invalid"


def member_cn(site: str) -> str:
    # Never the name of an etcd user (those are root, patroni, claims, ops, agent-<site>).
    return f"etcd-{site}"


def host_leaves(inv: Inventory, host: Host) -> list[Leaf]:
    """Every certificate `host` holds, by its roles."""
    out = []
    if host.has("etcd"):
        # The host's address, and loopback for clients on the member's own host.
        names = dict(ips=tuple(dict.fromkeys((host.address, "127.0.0.1"))), dns=(host.name, "localhost"))
        # Clients and etcd's own gateway (which dials the member with this certificate) use it:
        # server and client use, signed by the client CA.
        out.append(Leaf(host.name, *MEMBER, "client", member_cn(host.site), **names, server=True, client=True,
                        owner=USERS["etcd"]))
        # Members dial each other with it: both uses, signed by the peer CA. etcd checks a peer's
        # address against the IP SANs of the certificate it shows.
        out.append(Leaf(host.name, *PEER, "peer", member_cn(host.site), **names, server=True, client=True,
                        owner=USERS["etcd"]))
    if host.has("door"):
        out.append(Leaf(host.name, DOOR, door_key(inv), "client", f"door.{host.site}", ips=(host.address,),
                        dns=(host.name,), server=True, client=False, owner=role_user(inv, "door")))
    for role in host_etcd_roles(inv, host):
        if role == ROOT_ROLE:
            continue  # never on a host (see the module's docstring; refused earlier by check_inventory)
        d = access_dir(role)
        out.append(Leaf(host.name, f"{d}/client.pem", f"{d}/client-key.pem", "client", "", ips=(),
                        dns=(client_dns(role),), server=False, client=True, owner=role_owner(role)))
    return out


def operator_leaves() -> list[Leaf]:
    """The operator's identities (relative to the PKI directory): etcd's root, for `pki users`."""
    return [Leaf(OPERATOR, f"operator/{r}/client.pem", f"operator/{r}/client-key.pem", "client", "", ips=(),
                 dns=(client_dns(r),), server=False, client=True, owner="") for r in OPERATOR_ROLES]


def leaves(inv: Inventory) -> list[Leaf]:
    return [leaf for h in inv.hosts for leaf in host_leaves(inv, h)] + operator_leaves()


def bundles(inv: Inventory) -> list[Bundle]:
    """Every host trusts the client CA (it reaches etcd, or serves a door whose clients do); etcd
    hosts trust the peer CA too. The operator's directory holds a client bundle for its root."""
    out = [Bundle(h.name, CA, "client") for h in inv.hosts]
    out += [Bundle(h.name, PEER_CA, "peer") for h in inv.hosts if h.has("etcd")]
    return out + [Bundle(OPERATOR, "operator/ca.pem", "client")]


def token_hosts(inv: Inventory) -> list[Host]:
    """Hosts that hold etcd's token-signing pair (every member, the same pair)."""
    return [h for h in inv.hosts if h.has("etcd")]


def check_inventory(inv: Inventory) -> None:
    """What the PKI refuses in an inventory the renderer accepts."""
    if inv.settings.etcd.admin_on_agents:
        raise InputError(Problem(inv.source, "settings.etcd.admin_on_agents",
                                 "true would put etcd's root identity on every agent host, where one compromised "
                                 "host could then rewrite every key and user (issue 30); the PKI issues root to "
                                 "the operator only. Set it to false (the agents then leave defragmenting and "
                                 "moving etcd's leader to operators)"))


# ---- what is due ------------------------------------------------------------------------------

def due(leaf: Leaf, have, *, now: dt.datetime, within: dt.timedelta, signer_key_id: str) -> str | None:
    """Why `leaf` must be issued again, or None when the certificate on disk (`have`, x509.Facts,
    None when missing) serves: missing, a key that is not its own, signed by a CA other than the
    signing one (after a rollover began), names or uses the inventory no longer gives, expired,
    or expiring within `within`."""
    if have is None:
        return "missing"
    if have.key_matches is False:
        return "its key file does not hold the certificate's key"
    if have.issuer_key_id != signer_key_id:
        return (f"signed by another CA (key id {have.issuer_key_id[:16] or 'none'}), not the signing "
                f"{leaf.ca} CA ({signer_key_id[:16]})")
    want_ips, want_dns = frozenset(leaf.ips), frozenset(leaf.dns)
    if have.ips != want_ips or have.dns != want_dns:
        return (f"names {_names(have.ips, have.dns)} differ from the inventory's {_names(want_ips, want_dns)}")
    if (have.server, have.client) != (leaf.server, leaf.client):
        return f"usage {_usage(have.server, have.client)} differs from {_usage(leaf.server, leaf.client)}"
    if have.subject_cn != leaf.common_name:
        return f"common name {have.subject_cn!r} differs from {leaf.common_name!r}"
    return expiry_due(have.not_after, now=now, within=within)


def expiry_due(not_after: dt.datetime, *, now: dt.datetime, within: dt.timedelta) -> str | None:
    if not_after <= now:
        return f"expired on {not_after:%Y-%m-%d %H:%M} UTC"
    if not_after - now <= within:
        left = not_after - now
        return (f"expires on {not_after:%Y-%m-%d} (in {left.days} day(s); renewed within "
                f"{within.days} day(s) of expiry)")
    return None


def ca_due(not_after: dt.datetime, *, now: dt.datetime, within: dt.timedelta, kind: CAKind) -> str | None:
    """A CA near its end is not renewed in place: every host must trust its successor first."""
    why = expiry_due(not_after, now=now, within=within)
    return None if why is None else f"{why}: start a rollover (firebreak pki rotate --ca {kind})"


def retire_blockers(leaf_issuers: dict[str, str], retiring_key_id: str) -> list[str]:
    """The leaves still signed by a CA being retired: dropping its trust now would cut them off."""
    return sorted(name for name, issuer in leaf_issuers.items() if issuer == retiring_key_id)


def _names(ips, dns) -> str:
    return "[" + ", ".join(sorted(ips) + sorted(dns)) + "]"


def _usage(server: bool, client: bool) -> str:
    return "+".join(u for u, on in (("server", server), ("client", client)) if on) or "none"
