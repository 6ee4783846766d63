"""Operators and their tokens. Stored in etcd (so every site's console knows them and they
survive the loss of any one site), as argon2 hashes; a token is shown once, when created."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from firebreak.control.etcd import Etcd, EtcdError

ROLES = ("viewer", "operator", "admin")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Operator:
    name: str
    role: str


def new_token(name: str) -> tuple[str, str]:
    """(token to give the person, argon2 hash to store). The token is '<name>.<secret>'."""
    secret = secrets.token_urlsafe(24)
    return f"{name}.{secret}", _hasher.hash(secret)


def check_name(name: str) -> str | None:
    if not NAME_RE.match(name):
        return "operator names are 2-32 characters: lowercase letters, digits, - and _, starting with a letter"
    return None


async def add_operator(etcd: Etcd, prefix: str, name: str, role: str) -> str:
    token, digest = new_token(name)
    await etcd.put(f"{prefix}/operators/{name}", json.dumps({"hash": digest, "role": role, "created": time.time()}))
    return token


async def authenticate(etcd: Etcd, prefix: str, token: str) -> Operator | None:
    name, _, secret = token.partition(".")
    if not name or not secret or check_name(name):
        return None
    try:
        kv = await etcd.get(f"{prefix}/operators/{name}")
    except EtcdError:
        raise
    if kv is None:
        _hasher.hash("timing")  # answer as slowly as for a known name
        return None
    record = kv.json()
    try:
        _hasher.verify(record["hash"], secret)
    except (VerificationError, InvalidHashError, KeyError):
        return None
    return Operator(name, record.get("role", "viewer"))


def allowed(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
