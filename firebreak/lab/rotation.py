"""Every certificate the lab made, issued again with a new key by the lab's CA and written with
firebreak/pki's writer (the one `firebreak pki rotate` uses on real hosts): what an operator's
rotation does, on the lab's files. Used by the lab test and bench/rotation.py (issue 27)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from firebreak.errors import InputError, Problem
from firebreak.lab import access
from firebreak.lab.layout import LabLayout
from firebreak.pki import store, x509

__all__ = ["leaves", "rotate_all"]


def leaves(layout: LabLayout) -> list[tuple]:
    """(cert, key, common name, IP SANs, DNS SANs, server, client) of every certificate the lab
    made: each member's (server and peer, one CA in the lab), each door's, each role's client."""
    out = []
    for site in layout.sites:
        out.append((*site.etcd_member_cert, site.name, (site.address, "127.0.0.1"), (), True, True))
        out.append((*site.door_cert, f"door.{site.name}", (site.address,), (), True, False))
    for role in access.roles(layout):
        d = layout.access_dir(role)
        out.append((d / "client.pem", d / "client-key.pem", "", (), (f"{role}.firebreak.invalid",), False, True))
    return out


def rotate_all(layout: LabLayout, days: int = 30) -> dict[Path, int]:
    """New key and certificate for every leaf, signed by the lab's CA; {cert path: new serial}."""
    key = layout.ca_file.with_name("ca-key.pem")
    if not key.exists():
        raise InputError(Problem(str(key), "", "the lab's CA key is missing, so nothing can sign new certificates; "
                                               "a lab made by this version keeps it (docs/PKI.md, 'The lab')"))
    ca = x509.Pair(layout.ca_file.read_bytes(), key.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    serials = {}
    for cert, k, cn, ips, dns, server, client in leaves(layout):
        pair = x509.issue(ca, common_name=cn, ips=ips, dns=dns, server=server, client=client, now=now, days=days)
        store.write_pair(cert, k, pair)
        serials[cert] = x509.facts(pair.cert_pem, str(cert)).serial
    return serials
