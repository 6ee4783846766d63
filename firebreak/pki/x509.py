"""Certificates with the `cryptography` package: CAs, leaves, and what a certificate on disk says
about itself (`facts`), for the pure decisions in plan.py.

Keys are EC P-256, as the lab's (lab/pki.py): small, fast handshakes, accepted by etcd, Patroni's
urllib3, httpx and Caddy. Every CA carries a Subject Key Identifier and every leaf the matching
Authority Key Identifier, so "signed by which CA" is answered by an identifier, not by a name two
CAs of one estate share during a rollover.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firebreak.errors import InputError, Problem

BACKDATE = dt.timedelta(minutes=5)  # hosts whose clocks lag a little still accept a new certificate


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, PEM."""
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Facts:
    """What one certificate says about itself (and whether the key beside it is its key)."""
    subject_cn: str
    not_before: dt.datetime
    not_after: dt.datetime
    ips: frozenset[str]
    dns: frozenset[str]
    server: bool
    client: bool
    is_ca: bool
    key_id: str            # the CA's own Subject Key Identifier (hex); "" for a leaf
    issuer_key_id: str     # the signing CA's key identifier (hex), from the Authority Key Identifier
    serial: int
    key_matches: bool | None = None  # None: no key was looked at


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(Problem(label, "", f"not an unencrypted PEM private key ({e})")) from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(Problem(label, "", "not an EC private key (Firebreak's keys are EC P-256)"))
    return key


def load_cert(pem: bytes, label: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise InputError(Problem(label, "", f"not a PEM certificate ({e})")) from e


def load_certs(pem: bytes, label: str) -> list[x509.Certificate]:
    """Every certificate of a bundle (a CA file during a rollover holds two)."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise InputError(Problem(label, "", f"not a PEM certificate bundle ({e})")) from e


def make_ca(name: str, *, now: dt.datetime, days: int) -> Pair:
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Pair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def issue(ca: Pair, *, common_name: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = (), server: bool,
          client: bool, now: dt.datetime, days: int, key: bytes | None = None) -> Pair:
    """A leaf signed by `ca`, valid `days` from `now`. `key`: the leaf's existing private key
    (PEM) to keep (a renewal: the certificate alone changes, so no reader ever sees a key and a
    certificate that do not belong together); None makes a new one (a rotation)."""
    ca_key = load_key(ca.key_pem, "CA key")
    ca_cert = load_cert(ca.cert_pem, "CA certificate")
    leaf_key = load_key(key, "leaf key") if key is not None else new_key()
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []))
               .issuer_name(ca_cert.subject).public_key(leaf_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=True, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
    names = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), key_pem(leaf_key))


def token_keys() -> Pair:
    """The key pair etcd signs its auth tokens with (`--auth-token jwt`): `cert_pem` holds the
    public key. Every member holds the same pair, so a token from one is good at all of them."""
    key = new_key()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Pair(public, key_pem(key))


def _ext(cert: x509.Certificate, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def facts(cert_pem: bytes, label: str, key: bytes | None = None) -> Facts:
    """What the (first) certificate in `cert_pem` says; with `key`, whether that key is its own."""
    cert = load_cert(cert_pem, label)
    san = _ext(cert, x509.SubjectAlternativeName)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    bc = _ext(cert, x509.BasicConstraints)
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    matches = None
    if key is not None:
        try:
            matches = load_key(key, label + " (key)").public_key() == cert.public_key()
        except InputError:
            matches = False
    return Facts(
        subject_cn=str(cns[0].value) if cns else "",
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        ips=frozenset(str(i) for i in san.get_values_for_type(x509.IPAddress)) if san else frozenset(),
        dns=frozenset(san.get_values_for_type(x509.DNSName)) if san else frozenset(),
        server=bool(eku) and ExtendedKeyUsageOID.SERVER_AUTH in eku,
        client=bool(eku) and ExtendedKeyUsageOID.CLIENT_AUTH in eku,
        is_ca=bool(bc and bc.ca),
        key_id=ski.digest.hex() if (ski and bc and bc.ca) else "",
        issuer_key_id=(aki.key_identifier or b"").hex() if aki else "",
        serial=cert.serial_number, key_matches=matches)


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether `ca_pem`'s key signed the certificate (the signature itself, not just the names)."""
    cert, ca = load_cert(cert_pem, "certificate"), load_cert(ca_pem, "CA")
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
