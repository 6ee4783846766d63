"""The lab's certificates: one CA per lab, made at `lab up`, a server-and-peer certificate per
etcd member, and a client certificate per role, made by the same code `firebreak pki` uses for
real sites (firebreak/pki/x509.py), so the lab's certificates are what a site's are.

etcd checks client certificates against the CA (`--client-cert-auth`), so a client without one
is refused at the handshake; which keys a client may touch is decided by the etcd user it
authenticates as (lab/access.py). Keys are EC P-256: small, fast handshakes, accepted by etcd,
Patroni's urllib3 and httpx.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from firebreak.pki import x509
from firebreak.pki.x509 import Pair as Issued

VALID_DAYS = 825  # a lab lives for hours; a real CA's policy is the operator's

__all__ = ["Issued", "VALID_DAYS", "issue", "make_ca", "token_keys", "write"]


def make_ca(name: str) -> Issued:
    return x509.make_ca(name, now=dt.datetime.now(dt.timezone.utc), days=VALID_DAYS)


def issue(ca: Issued, common_name: str, *, ips: list[str] = (), dns: list[str] = (), server: bool = False,
          client: bool = True) -> Issued:
    """A leaf certificate signed by `ca`. etcd members get server and client use (peers dial
    each other); clients get client use only and no common name at all: etcd's JSON gateway
    refuses a client certificate that has one (it would otherwise be mistaken for the etcd user
    of that name), and who a client is comes from the etcd user it logs in as."""
    return x509.issue(ca, common_name=common_name, ips=tuple(ips), dns=tuple(dns), server=server, client=client,
                      now=dt.datetime.now(dt.timezone.utc), days=VALID_DAYS)


def token_keys() -> Issued:
    """The key pair etcd signs its auth tokens with (`--auth-token jwt`): `cert_pem` holds the
    public key. Every member gets the same pair, so a token from one is good at all of them."""
    return x509.token_keys()


def write(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Certificate world-readable is fine; the key is the secret: 0600 from the start."""
    from firebreak.lab.state import write_private

    cert_path.write_bytes(issued.cert_pem)
    write_private(key_path, issued.key_pem.decode())
