"""Operators and their tokens. Stored in etcd (so every site's console knows them and they
survive the loss of any one site); a token is shown once, when created.

A token is '<name>.<secret>' with 256 random bits of secret: nobody guesses it, so it needs no
slow password hash. It is stored as a salted HMAC-SHA256, checked in microseconds. That matters
because the console shares its process with the failure detector: an argon2 check costs 0.2 to
0.8 s of CPU here, and a burst of anonymous logins once held an agent past its leases and got a
healthy site voted dead. Hashes made by earlier versions (argon2) still verify, in a worker
thread, at most two at a time, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from firebreak.control.etcd import Etcd
from firebreak.control.keys import Keys

ROLES = ("viewer", "operator", "admin")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
MAX_TOKEN = 128  # characters; longer is not a token of ours
SCHEME = "hmac-sha256"
_legacy_slots = asyncio.Semaphore(2)


@dataclass(frozen=True)
class Operator:
    name: str
    role: str


def _mac(salt: bytes, token: str) -> str:
    return hmac.new(salt, token.encode(), hashlib.sha256).hexdigest()


def new_token(name: str) -> tuple[str, str]:
    """(token to give the person, keyed hash to store)."""
    token = f"{name}.{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(16)
    return token, f"{SCHEME}${salt.hex()}${_mac(salt, token)}"


def verify_fast(stored: str, token: str) -> bool | None:
    """True or False for a keyed hash; None when `stored` is a legacy (argon2) hash."""
    scheme, _, rest = stored.partition("$")
    if scheme != SCHEME:
        return None
    salt_hex, _, mac = rest.partition("$")
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    return hmac.compare_digest(_mac(salt, token), mac)


def _verify_argon2(stored: str, secret: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(stored, secret)
    except (VerificationError, InvalidHashError):
        return False


def check_name(name: str) -> str | None:
    if not NAME_RE.match(name):
        return "operator names are 2-32 characters: lowercase letters, digits, - and _, starting with a letter"
    return None


async def add_operator(etcd: Etcd, keys: Keys, name: str, role: str) -> str:
    token, digest = new_token(name)
    await etcd.put(keys.operator(name), json.dumps({"hash": digest, "role": role, "created": time.time()}))
    return token


async def authenticate(etcd: Etcd, keys: Keys, token: str) -> Operator | None:
    if len(token) > MAX_TOKEN:
        return None
    name, _, secret = token.partition(".")
    if not name or not secret or check_name(name):
        return None
    kv = await etcd.get(keys.operator(name))
    if kv is None:
        return None
    try:
        record = kv.json()
        stored = record["hash"]
    except (ValueError, KeyError, TypeError):
        return None
    ok = verify_fast(stored, token)
    if ok is None:
        if _legacy_slots.locked():
            return None  # a queue of slow checks is what a flood looks like; real operators retry
        async with _legacy_slots:
            ok = await asyncio.to_thread(_verify_argon2, stored, secret)
    return Operator(name, record.get("role", "viewer")) if ok else None


def allowed(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
