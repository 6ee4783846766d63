"""etcd's users and roles for an estate, made to match control/keys.py role_grants (the one list
of who may write what): `changes` is the pure difference between what etcd holds and what the
grants say; `apply` asks a real etcd what it holds and makes only those changes, so a second run
changes nothing.

Each role's user has the password the estate's secrets file gives it (deploy/secrets.py: the
renderer writes the same password into that role's password file, mode 0600, on its hosts).
Passwords cannot be read back from etcd; a user's is checked by logging in with it (once
authentication is on), and set again only when that fails.

Users and roles etcd holds beyond the list (a site removed from the inventory) are reported, not
deleted: removing an identity is an operator's decision.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Iterable

import httpx

from firebreak.control.etcd import Etcd, EtcdAccess
from firebreak.control.keys import Grant, prefix_end
from firebreak.errors import EtcdError

ROOT = "root"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


@dataclass(frozen=True, order=True)
class Perm:
    """One permission as etcd stores it: a key, the end of its range ("" for the key alone)."""
    key: str
    range_end: str
    perm: str

    @classmethod
    def of(cls, g: Grant) -> "Perm":
        return cls(g.key, prefix_end(g.key) if g.prefix else "", g.perm)

    def describe(self) -> str:
        return f"{self.perm} {self.key}{'*' if self.range_end else ''}"


@dataclass(frozen=True)
class Change:
    op: str             # role_add | role_grant | role_revoke | user_add | user_grant | user_revoke_role | password | auth_enable
    name: str           # the role or user
    perm: Perm | None = None
    role: str = ""

    def describe(self) -> str:
        if self.perm is not None:
            return f"{self.op} {self.name}: {self.perm.describe()}"
        return f"{self.op} {self.name}" + (f" {self.role}" if self.role else "")


@dataclass(frozen=True)
class Held:
    """What etcd holds now."""
    auth_enabled: bool
    roles: dict[str, frozenset[Perm]]
    users: dict[str, frozenset[str]]          # user -> its roles
    password_ok: dict[str, bool | None]       # user -> the secrets' password logs in (None: not checked)


def changes(want: dict[str, tuple[Grant, ...]], held: Held) -> tuple[list[Change], list[str]]:
    """What to do so that etcd holds `want` (role -> grants; each role's user of the same name,
    and root), and notes on what it holds beyond it. Order matters: roles before users, users
    before authentication is turned on (etcd refuses `auth enable` without a root user)."""
    out: list[Change] = []
    for role, grants in want.items():
        have = held.roles.get(role)
        if have is None:
            out.append(Change("role_add", role))
            have = frozenset()
        wanted = frozenset(Perm.of(g) for g in grants)
        out += [Change("role_grant", role, p) for p in sorted(wanted - have)]
        out += [Change("role_revoke", role, p) for p in sorted(have - wanted)]
    for user in [ROOT, *want]:
        role = ROOT if user == ROOT else user
        roles = held.users.get(user)
        if roles is None:
            out.append(Change("user_add", user))
            roles = frozenset()
        elif held.password_ok.get(user) is not True:
            # Not known to log in with the secrets' password: set it (before authentication is
            # on nothing can be checked; after, only a failed login sets it again).
            out.append(Change("password", user))
        if role not in roles:
            out.append(Change("user_grant", user, role=role))
        out += [Change("user_revoke_role", user, role=r) for r in sorted(roles - {role})]
    if not held.auth_enabled:
        out.append(Change("auth_enable", ROOT))
    notes = [f"etcd user '{u}' is not in this estate's list; `etcdctl user delete {u}` if its site is gone"
             for u in sorted(set(held.users) - set(want) - {ROOT})]
    notes += [f"etcd role '{r}' is not in this estate's list" for r in sorted(set(held.roles) - set(want) - {ROOT})]
    return out, notes


class EtcdAdmin(Etcd):
    """The calls that read etcd's users and roles, beside control/etcd.py's that make them."""

    async def auth_status(self) -> bool:
        """Whether authentication is on. Asked without a user: once it is on, etcd refuses even
        this question to a client that has not logged in, which answers it too."""
        try:
            return bool((await self._call("/v3/auth/status", {})).get("enabled", False))
        except EtcdError as e:
            if "user name is empty" in str(e) and not self.access.user:
                return True
            raise

    async def role_list(self) -> list[str]:
        return list((await self._call("/v3/auth/role/list", {})).get("roles", []) or [])

    async def role_perms(self, role: str) -> frozenset[Perm]:
        resp = await self._call("/v3/auth/role/get", {"role": role})
        # The JSON gateway leaves out fields holding their zero value: READ (0), no range end.
        return frozenset(Perm(_unb64(p.get("key", "")), _unb64(p.get("range_end", "")), p.get("permType", "READ"))
                         for p in resp.get("perm", []) or [])

    async def user_list(self) -> list[str]:
        return list((await self._call("/v3/auth/user/list", {})).get("users", []) or [])

    async def user_roles(self, user: str) -> frozenset[str]:
        return frozenset((await self._call("/v3/auth/user/get", {"name": user})).get("roles", []) or [])

    async def role_grant_perm(self, role: str, perm: Perm) -> None:
        body = {"permType": perm.perm, "key": _b64(perm.key)}
        if perm.range_end:
            body["range_end"] = _b64(perm.range_end)
        await self._call("/v3/auth/role/grant", {"name": role, "perm": body})

    async def role_revoke(self, role: str, perm: Perm) -> None:
        body = {"role": role, "key": _b64(perm.key)}
        if perm.range_end:
            body["range_end"] = _b64(perm.range_end)
        await self._call("/v3/auth/role/revoke", body)

    async def user_revoke_role(self, user: str, role: str) -> None:
        await self._call("/v3/auth/user/revoke", {"name": user, "role": role})

    async def user_set_password(self, user: str, password: str) -> None:
        await self._call("/v3/auth/user/changepw", {"name": user, "password": password})


async def logs_in(endpoints: list[str], tls: EtcdAccess, user: str, password: str) -> bool:
    """Whether `user` logs in with `password` at one of the members."""
    async with httpx.AsyncClient(timeout=5, verify=tls.ssl_context()) as c:
        last: Exception | None = None
        for ep in endpoints:
            try:
                r = await c.post(ep + "/v3/auth/authenticate", json={"name": user, "password": password})
            except httpx.HTTPError as e:
                last = e
                continue
            return r.status_code == 200 and bool(r.json().get("token"))
        raise EtcdError(f"no etcd member answered a login: {last!r}")


async def held(admin: EtcdAdmin, endpoints: list[str], tls: EtcdAccess, passwords: dict[str, str],
               enabled: bool) -> Held:
    roles = {r: await admin.role_perms(r) for r in await admin.role_list() if r != ROOT}
    users = {u: await admin.user_roles(u) for u in await admin.user_list()}
    ok: dict[str, bool | None] = {}
    for u in users:
        if enabled and u in passwords:
            ok[u] = await logs_in(endpoints, tls, u, passwords[u])
        else:
            ok[u] = None
    return Held(enabled, roles, users, ok)


async def apply(endpoints: list[str], root: EtcdAccess, want: dict[str, tuple[Grant, ...]],
                passwords: dict[str, str], dry_run: bool = False) -> tuple[list[Change], list[str]]:
    """Make etcd hold `want`. `root`: the operator's root identity (TLS, and its user and password
    once authentication is on). Returns the changes made (or, with dry_run, to make) and notes."""
    missing = [u for u in [ROOT, *want] if not passwords.get(u)]
    if missing:
        raise EtcdError(f"the secrets file has no etcd password for {', '.join(missing)}; render again with "
                        "`firebreak deploy render` (it adds passwords for new roles) and pass its --secrets")
    tls = EtcdAccess(root.ca, root.cert, root.key)
    probe = EtcdAdmin(endpoints, timeout=5, patience=0, access=tls)
    try:
        enabled = await probe.auth_status()
    finally:
        await probe.close()
    # Before authentication is on there is no user to log in as: TLS with root's certificate alone.
    admin = EtcdAdmin(endpoints, timeout=5, patience=5, access=root if enabled else tls)
    try:
        todo, notes = changes(want, await held(admin, endpoints, tls, passwords, enabled))
        if not dry_run:
            for c in todo:
                await _do(admin, c, passwords)
    finally:
        await admin.close()
    return todo, notes


async def _do(admin: EtcdAdmin, c: Change, passwords: dict[str, str]) -> None:
    if c.op == "role_add":
        await admin.role_add(c.name)
    elif c.op == "role_grant":
        assert c.perm is not None
        await admin.role_grant_perm(c.name, c.perm)
    elif c.op == "role_revoke":
        assert c.perm is not None
        await admin.role_revoke(c.name, c.perm)
    elif c.op == "user_add":
        await admin.user_add(c.name, passwords[c.name])
    elif c.op == "password":
        await admin.user_set_password(c.name, passwords[c.name])
    elif c.op == "user_grant":
        await admin.user_grant_role(c.name, c.role)
    elif c.op == "user_revoke_role":
        await admin.user_revoke_role(c.name, c.role)
    elif c.op == "auth_enable":
        await admin.auth_enable()
    else:  # pragma: no cover - changes() makes no other
        raise EtcdError(f"unknown change {c.op}")


def describe(todo: Iterable[Change]) -> list[str]:
    return [c.describe() for c in todo]
