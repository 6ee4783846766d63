"""The files: the operator's PKI directory (CAs, etcd's token keys, the operator's root identity)
and the hosts' certificates in the rendered tree (`DIR/<host>/` mirrors each host's root, as
`firebreak deploy render --out DIR` writes it). plan.py decides; this module reads and writes.

    <pki>/client-ca.pem, client-ca-key.pem      the client CA: signs members' server certificates,
                                                every role's client certificate, the doors'
    <pki>/peer-ca.pem, peer-ca-key.pem          the peer CA: signs members' peer certificates only
    <pki>/<kind>-ca.retiring{,-key}.pem         during a rollover: the old CA, still trusted
    <pki>/etcd-token{,-key}.pem                 etcd's token-signing pair (every member the same)
    <pki>/operator/root/                        etcd's root: client{,-key}.pem, password, access.json
    <pki>/operator/ca.pem                       what the operator's root trusts

CA keys stay in <pki> (mode 0600, the directory 0700) and are never written into a host's tree.

Every file is written whole to a temporary file in its directory, with its mode from the first
byte, then renamed over the old one: a reader (etcd reads its certificate and key at every TLS
handshake) sees the old file or the new one, never half of one. A file whose content and mode are
already right is not touched, so running a command twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from firebreak.errors import FirebreakError, InputError, Problem
from firebreak.pki import plan, x509
from firebreak.pki.plan import OPERATOR, CAKind, Leaf

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomic(path: Path, data: bytes, mode: int) -> bool:
    """Write `data` to `path` atomically with `mode`; False (nothing done) when already so."""
    try:
        if path.read_bytes() == data and path.stat().st_mode & 0o777 == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        _keep_owner(fd, path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _keep_owner(fd: int, path: Path) -> None:
    """A file replaced in place keeps its owner: a key 0600 of etcd's user, rewritten by root,
    must stay readable by etcd (when this process may not give it away, it is its own already)."""
    try:
        st = path.stat()
        os.fchown(fd, st.st_uid, st.st_gid)
    except (FileNotFoundError, PermissionError):
        pass


def write_pair(cert: Path, key: Path, pair: x509.Pair) -> bool:
    """A certificate and its key. The key first: a reader between the two renames sees the new key
    with the old certificate and fails that one handshake (microseconds; a renewal keeps the key,
    so only the certificate changes and there is no such moment; docs/PKI.md)."""
    wrote_key = write_atomic(key, pair.key_pem, PRIVATE)
    return write_atomic(cert, pair.cert_pem, PUBLIC) or wrote_key


@dataclass
class Store:
    pki: Path            # the operator's PKI directory
    out: Path | None     # the rendered tree (DIR/<host>/...); None: the operator's files only

    # -- where things are --------------------------------------------------------------------

    def ca_cert(self, kind: CAKind, retiring: bool = False) -> Path:
        return self.pki / f"{kind}-ca{'.retiring' if retiring else ''}.pem"

    def ca_key(self, kind: CAKind, retiring: bool = False) -> Path:
        return self.pki / f"{kind}-ca{'.retiring' if retiring else ''}-key.pem"

    @property
    def token(self) -> tuple[Path, Path]:
        return self.pki / "etcd-token.pem", self.pki / "etcd-token-key.pem"

    def at(self, host: str, path: str) -> Path:
        """A host's file (absolute path on the host) in the rendered tree, or an operator's file."""
        if host == OPERATOR:
            return self.pki / path
        if self.out is None:
            raise FirebreakError("no --out directory given for the hosts' files")
        return self.out / host / path.lstrip("/")

    # -- the CAs ---------------------------------------------------------------------------------

    def has_ca(self, kind: CAKind) -> bool:
        return self.ca_cert(kind).exists() and self.ca_key(kind).exists()

    def signer(self, kind: CAKind) -> x509.Pair:
        cert, key = self.ca_cert(kind), self.ca_key(kind)
        try:
            return x509.Pair(cert.read_bytes(), key.read_bytes())
        except FileNotFoundError:
            raise InputError(Problem("--dir", "", f"{self.pki}: no {kind} CA ({cert.name}, {key.name}); make the "
                                                  f"CAs first with `firebreak pki init --dir {self.pki}`")) from None

    def retiring(self, kind: CAKind) -> bytes | None:
        p = self.ca_cert(kind, retiring=True)
        return p.read_bytes() if p.exists() else None

    def trusted(self, kind: CAKind) -> bytes:
        """The bundle hosts trust: the signing CA, and the retiring one during a rollover."""
        return self.signer(kind).cert_pem + (self.retiring(kind) or b"")

    def signer_key_id(self, kind: CAKind) -> str:
        return x509.facts(self.signer(kind).cert_pem, str(self.ca_cert(kind))).key_id

    def check_private_dir(self) -> None:
        if self.pki.exists():
            mode = self.pki.stat().st_mode & 0o777
            if mode & 0o077:
                raise InputError(Problem(str(self.pki), "", f"mode {mode:04o} lets other users into the directory "
                                                            f"that holds the CA keys; `chmod 700 {self.pki}`"))

    # -- reading a leaf ------------------------------------------------------------------------

    def facts(self, leaf: Leaf) -> x509.Facts | None:
        cert, key = self.at(leaf.host, leaf.cert), self.at(leaf.host, leaf.key)
        try:
            cert_pem = cert.read_bytes()
        except FileNotFoundError:
            return None
        try:
            key_pem = key.read_bytes()
        except FileNotFoundError:
            key_pem = b""
        return x509.facts(cert_pem, str(cert), key_pem)

    def key_of(self, leaf: Leaf) -> bytes | None:
        try:
            return self.at(leaf.host, leaf.key).read_bytes()
        except FileNotFoundError:
            return None


# ---- commands' bodies ---------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a command did: files written, certificates issued (name -> why), notes for people."""
    written: list[str] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def doc(self) -> dict:
        return {"written": self.written, "issued": self.issued, "kept": self.kept, "notes": self.notes}


def init(store: Store, *, now: dt.datetime, days: int, name: str) -> Outcome:
    """The two CAs and etcd's token keys, each made only if missing (a second run changes nothing)."""
    o = Outcome()
    store.check_private_dir()
    store.pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    for kind in plan.CA_KINDS:
        if store.has_ca(kind):
            o.kept.append(str(store.ca_cert(kind)))
            continue
        ca = x509.make_ca(f"{name} {kind} CA", now=now, days=days)
        write_atomic(store.ca_key(kind), ca.key_pem, PRIVATE)
        write_atomic(store.ca_cert(kind), ca.cert_pem, PUBLIC)
        o.written += [str(store.ca_cert(kind)), str(store.ca_key(kind))]
    pub, key = store.token
    if pub.exists() and key.exists():
        o.kept.append(str(pub))
    else:
        t = x509.token_keys()
        write_atomic(key, t.key_pem, PRIVATE)
        write_atomic(pub, t.cert_pem, PUBLIC)
        o.written += [str(pub), str(key)]
    return o


def survey(store: Store, leaves: list[Leaf], *, now: dt.datetime, within: dt.timedelta) -> list[tuple[Leaf, str | None]]:
    """Each leaf with why it is due, or None."""
    signers = {k: store.signer_key_id(k) for k in plan.CA_KINDS}
    return [(leaf, plan.due(leaf, store.facts(leaf), now=now, within=within, signer_key_id=signers[leaf.ca]))
            for leaf in leaves]


def issue(store: Store, leaves: list[Leaf], *, now: dt.datetime, days: int, within: dt.timedelta,
          rotate: bool = False) -> Outcome:
    """Issue every leaf that is due (with `rotate`: every leaf, each with a new key). A due leaf
    whose key is still its own keeps it (a renewal swaps one file); a rotation makes new keys."""
    o = Outcome()
    signers = {k: store.signer(k) for k in plan.CA_KINDS}
    for leaf, why in survey(store, leaves, now=now, within=within):
        if why is None and not rotate:
            o.kept.append(leaf.name)
            continue
        keep = None
        if not rotate:
            have = store.facts(leaf)
            if have is not None and have.key_matches:
                keep = store.key_of(leaf)
        pair = x509.issue(signers[leaf.ca], common_name=leaf.common_name, ips=leaf.ips, dns=leaf.dns,
                          server=leaf.server, client=leaf.client, now=now, days=days, key=keep)
        cert, key = store.at(leaf.host, leaf.cert), store.at(leaf.host, leaf.key)
        write_pair(cert, key, pair)
        o.written += [str(cert)] + ([] if keep else [str(key)])
        o.issued[leaf.name] = "rotated" if rotate else why or ""
    return o


def distribute(store: Store, bundles: list[plan.Bundle], token_hosts: list[str], operator_password: str | None) -> Outcome:
    """The CA bundles every host trusts, etcd's token keys on every member, and the operator's
    access file for etcd's root (its password from the estate's secrets)."""
    o = Outcome()
    trusted = {k: store.trusted(k) for k in plan.CA_KINDS}
    for b in bundles:
        p = store.at(b.host, b.path)
        if write_atomic(p, trusted[b.ca], PUBLIC):
            o.written.append(str(p))
    pub, key = store.token
    try:
        token = x509.Pair(pub.read_bytes(), key.read_bytes())
    except FileNotFoundError:
        raise InputError(Problem("--dir", "", f"{store.pki}: no etcd token keys; run `firebreak pki init "
                                              f"--dir {store.pki}`")) from None
    for host in token_hosts:
        for path, data, mode in ((plan.TOKEN[1], token.key_pem, PRIVATE), (plan.TOKEN[0], token.cert_pem, PUBLIC)):
            p = store.at(host, path)
            if write_atomic(p, data, mode):
                o.written.append(str(p))
    if operator_password is not None:
        for role in plan.OPERATOR_ROLES:
            d = store.pki / "operator" / role
            doc = {"ca": "../ca.pem", "cert": "client.pem", "key": "client-key.pem", "user": role,
                   "password_file": "password"}
            for p, data, mode in ((d / "password", (operator_password + "\n").encode(), PRIVATE),
                                  (d / "access.json", (json.dumps(doc, indent=2) + "\n").encode(), PUBLIC)):
                if write_atomic(p, data, mode):
                    o.written.append(str(p))
    return o


def begin_rollover(store: Store, kind: CAKind, *, now: dt.datetime, days: int, name: str) -> Outcome:
    """A new `kind` CA signs from now on; the old one stays trusted (the bundles hold both) until
    `retire`. No leaf is re-signed here: hosts must trust the new CA before anyone shows them a
    certificate it signed (etcd reads its trusted CA file only when it starts)."""
    if store.retiring(kind) is not None:
        raise InputError(Problem("--ca", "", f"a rollover of the {kind} CA is already under way; finish it with "
                                             f"`firebreak pki rotate --retire-ca {kind}` before starting another"))
    old = store.signer(kind)
    o = Outcome()
    write_atomic(store.ca_key(kind, retiring=True), old.key_pem, PRIVATE)
    write_atomic(store.ca_cert(kind, retiring=True), old.cert_pem, PUBLIC)
    new = x509.make_ca(f"{name} {kind} CA", now=now, days=days)
    write_atomic(store.ca_key(kind), new.key_pem, PRIVATE)
    write_atomic(store.ca_cert(kind), new.cert_pem, PUBLIC)
    o.written += [str(store.ca_cert(kind)), str(store.ca_cert(kind, retiring=True))]
    return o


def retire(store: Store, kind: CAKind, leaves: list[Leaf]) -> Outcome:
    """End a rollover: drop the old CA from the trust bundles, refused while a leaf it signed remains."""
    old = store.retiring(kind)
    if old is None:
        raise InputError(Problem("--retire-ca", "", f"no rollover of the {kind} CA is under way"))
    old_id = x509.facts(old, str(store.ca_cert(kind, retiring=True))).key_id
    issuers = {}
    for leaf in leaves:
        have = store.facts(leaf) if leaf.ca == kind else None
        if have is not None:
            issuers[leaf.name] = have.issuer_key_id
    blockers = plan.retire_blockers(issuers, old_id)
    if blockers:
        raise FirebreakError(f"{len(blockers)} certificate(s) are still signed by the retiring {kind} CA, and "
                             f"would stop working: {', '.join(blockers[:5])}{' ...' if len(blockers) > 5 else ''}; "
                             "re-sign them first (`firebreak pki rotate`), install them, then retire")
    o = Outcome()
    for p in (store.ca_cert(kind, retiring=True), store.ca_key(kind, retiring=True)):
        p.unlink(missing_ok=True)
        o.written.append(f"removed {p}")
    return o
