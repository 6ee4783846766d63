"""Reviewer accounts and what each role may do. Passwords are stored only as argon2 hashes;
there is no default account and no default password: an admin creates every user with
`firebreak claims user add`."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("reviewer", "approver", "admin")
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 12
# What each action needs: reviewers triage (reject, escalate, note); approvers also release money.
NEEDS = {"note": "reviewer", "reject": "reviewer", "escalate": "reviewer", "approve": "approver",
         "bulk-approve": "approver", "export": "approver", "users": "admin"}
_hasher = PasswordHasher()
# Verifying against this when a user does not exist makes a wrong name cost as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class Reviewer:
    name: str
    role: str


def may(role: str, action: str) -> bool:
    return ROLES.index(role) >= ROLES.index(NEEDS[action])


def check_new_user(name: str, role: str, password: str) -> list[str]:
    problems = []
    if not NAME_RE.match(name):
        problems.append(f"name '{name}': use 2-32 lowercase letters, digits, '.', '_' or '-', starting with a letter")
    if role not in ROLES:
        problems.append(f"role '{role}': choose one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        problems.append(f"password: at least {MIN_PASSWORD} characters")
    return problems


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(digest: str | None, password: str) -> bool:
    try:
        return _hasher.verify(digest or _DUMMY, password) and digest is not None
    except (VerificationError, InvalidHashError):
        return False


# argon2 costs 0.3 to 0.8 s of a core here: never on the event loop that serves intake, and at
# most two at once, so a flood of sign-in attempts queues behind them instead of taking every core.
_VERIFY_SLOTS = 2
_slots: asyncio.Semaphore | None = None


async def verify_password_async(digest: str | None, password: str) -> bool:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(_VERIFY_SLOTS)
    async with _slots:
        return await asyncio.to_thread(verify_password, digest, password)


def add_user(dsn: str, name: str, role: str, password: str) -> bool:
    """Create or update a reviewer; returns True when the user is new."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO reviewers (name, role, password_hash) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash "
            "RETURNING (xmax = 0)", (name, role, hash_password(password))).fetchone()
        conn.execute("INSERT INTO review_audit (who, action, detail, outcome) VALUES (%s, %s, %s, 'ok')",
                     ("cli", "user-add" if row[0] else "user-update",
                      psycopg.types.json.Jsonb({"name": name, "role": role})))
    return bool(row[0])
