"""A small async client for etcd's v3 JSON gateway: just what the agent needs (get, put with a
lease, compare-and-swap transactions, leases), with fail-over between endpoints and short
timeouts, because an agent that hangs on a dead etcd member detects nothing.

Against a locked etcd (TLS, client certificates, authentication) it verifies the members against
the CA, presents its client certificate, and logs in as its etcd user, again whenever a member
says its token is not valid (it expired, or the member forgot it).

A login is dear: etcd checks the password with bcrypt and commits the login through raft, 0.6 to
3.6 s each on a busy member. A client that gave up on a login after its usual half second and
started another with its next request kept etcd busy with logins nobody waited for: after a site
came back, every site's agents could not reach etcd for 20 s. So one login at a time per client,
given longer than a request, and none for a moment after one failed; and a signed token is
replaced a minute before it expires, so no request waits for a login because one ran out."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from firebreak.control.keys import prefix_end
from firebreak.errors import EtcdError, EtcdPermissionDenied


TXN_OPS = 100
LOGIN_TIMEOUT = 3.0   # seconds a login may take to be answered by a busy member (see above)
LOGIN_BACKOFF = 1.0   # seconds without a new login at a member after one failed there
# A signed token is replaced this long before it expires, beside the requests that still use it,
# so no request (a failover's, say) ever waits for a login because a token ran out.
RENEW_BEFORE = 60.0


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


@dataclass(frozen=True)
class KV:
    key: str
    value: str
    mod_revision: int
    create_revision: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach a locked etcd: the CA its members' certificates are signed by, this client's
    certificate and key, and the etcd user and password it logs in as. All empty: an open etcd."""
    ca: str = ""
    cert: str = ""
    key: str = ""
    user: str = ""
    password: str = ""

    @classmethod
    def from_file(cls, path: str | Path) -> "EtcdAccess":
        """A role's access file (the lab writes one per role): JSON with ca, cert, key, user and
        password_file, paths relative to the file."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
            base = p.parent
            pw = (base / d["password_file"]).read_text().strip() if d.get("password_file") else ""
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EtcdError(f"{p}: cannot read etcd access ({e}); it should be JSON with ca, cert, key, user "
                            "and password_file, readable by this user") from e
        return cls(*(str(base / d[k]) if d.get(k) else "" for k in ("ca", "cert", "key")), d.get("user", ""), pw)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.ca:
            return True
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key or None)
        return ctx


OPEN = EtcdAccess()
# etcd's answers that mean "log in (again)": no token, or one this member does not know.
# What etcd answers when the token must be replaced: the last one after any change of users,
# roles or grants (a token carries the auth revision it was issued at; etcd's Go client logs in
# again on it too). Without it every write failed until the token expired, after `pki users`.
_AUTH_ERRORS = ("invalid auth token", "user name is empty", "auth token is not provided",
                "revision in header is old", "revision of auth store is old")


def token_expiry(token: str) -> float | None:
    """When a signed (JWT) token expires, in Unix time, from its own claims; None for a simple
    token (`<random>.<index>`) or anything unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return None


class Etcd:
    """etcd's JSON gateway. `patience`: how long to keep retrying every member before giving up.
    The agent's loops want none (failing fast is how an isolated agent learns it must stand
    down); an operator's action can wait out the second or two of a raft election that follows
    the loss of the site holding etcd's leader."""

    def __init__(self, endpoints: list[str], timeout: float = 0.6, patience: float = 0.0, access: EtcdAccess = OPEN):
        self.endpoints = list(endpoints)
        self.patience = patience
        self.access = access
        self.client = httpx.AsyncClient(timeout=timeout, verify=access.ssl_context())
        self._token = ""
        self._token_expires: float | None = None  # read once from each new token, not per request
        self._login_lock = asyncio.Lock()
        self._login_failed_at: dict[str, float] = {}  # endpoint -> when a login there last failed
        self._renewal: asyncio.Task | None = None

    async def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        await self.client.aclose()

    async def _post(self, url: str, body: dict, timeout: float | None = None) -> httpx.Response:
        """One request to one member, logged in if this client has a user (and again once if the
        member does not take the token)."""
        kw: dict = {"json": body}
        if timeout is not None:
            kw["timeout"] = timeout
        endpoint = url.split("/v3/", 1)[0]
        if self.access.user and not self._token:
            await self._login(endpoint, stale="")
        token = self._token
        if self._token_expires is not None and time.time() >= self._token_expires - RENEW_BEFORE:
            self._renew(endpoint, token)
        r = await self._send(url, token, kw)
        if r.status_code != 200 and self.access.user and any(e in r.text for e in _AUTH_ERRORS):
            await self._login(endpoint, stale=token)
            r = await self._send(url, self._token, kw)
        return r

    def _renew(self, endpoint: str, token: str) -> None:
        """Replace `token` beside the requests still using it (one renewal at a time)."""
        if self._renewal is not None:
            return

        async def renew() -> None:
            try:
                await self._login(endpoint, stale=token)
            except (httpx.HTTPError, EtcdError):
                pass  # the token is still good for a while; the next request tries again
            finally:
                self._renewal = None
        self._renewal = asyncio.get_running_loop().create_task(renew())

    async def _send(self, url: str, token: str, kw: dict) -> httpx.Response:
        return await self.client.post(url, headers={"Authorization": token} if token else None, **kw)

    async def _login(self, endpoint: str, stale: str) -> None:
        """Replace the token `stale` with a new one. Requests that find the same stale token
        wait for the login already under way instead of starting their own."""
        async with self._login_lock:
            if self._token != stale:
                return  # another request logged in while this one waited
            failed_at = self._login_failed_at.get(endpoint)
            if failed_at is not None and time.monotonic() - failed_at < LOGIN_BACKOFF:
                raise EtcdError(f"{endpoint}: a login there failed less than {LOGIN_BACKOFF:g} s ago; "
                                "trying the other members meanwhile")
            # A dead member still fails at the usual connect timeout; a busy one gets time to answer.
            timeout = httpx.Timeout(LOGIN_TIMEOUT, connect=self.client.timeout.connect)
            try:
                r = await self.client.post(endpoint + "/v3/auth/authenticate", timeout=timeout,
                                           json={"name": self.access.user, "password": self.access.password})
            except httpx.HTTPError:
                self._login_failed_at[endpoint] = time.monotonic()
                raise
            if r.status_code != 200:
                self._login_failed_at[endpoint] = time.monotonic()
                raise EtcdError(f"{endpoint}: etcd refused user '{self.access.user}': {r.text[:200]}; check its "
                                "password file and that the user exists (`etcdctl user list`)")
            self._token = r.json().get("token", "")
            self._token_expires = token_expiry(self._token)

    async def _call(self, path: str, body: dict) -> dict:
        last: Exception | None = None
        deadline = time.monotonic() + self.patience
        while True:
            for ep in self.endpoints:
                try:
                    r = await self._post(ep + path, body)
                except (httpx.HTTPError, EtcdError) as e:  # EtcdError: the member refused our login
                    last = e
                    continue
                if r.status_code == 200:
                    # No reordering: this site's member stays first, so a hiccup there does
                    # not leave the agent talking to another site's member for good.
                    return r.json()
                if "permission denied" in r.text:
                    # Not a member's hiccup: every member would say the same.
                    raise EtcdPermissionDenied(f"etcd denied {path} to user '{self.access.user or 'anonymous'}': "
                                               "this role may not do that")
                if r.status_code == 404:
                    # Nor is a lease that is not there ("requested lease not found"): asking the
                    # next member, whose timeout would then be the error kept, loses the answer.
                    raise EtcdError(f"{ep}{path}: {r.text[:200]}")
                last = EtcdError(f"{ep}{path}: HTTP {r.status_code} {r.text[:200]}")
            if time.monotonic() >= deadline:
                raise EtcdError(f"no etcd member answered {path}: {last!r}")
            await asyncio.sleep(0.1)

    @staticmethod
    def _kvs(resp: dict) -> list[KV]:
        return [KV(key=_unb64(kv["key"]), value=_unb64(kv.get("value", "")),
                   mod_revision=int(kv.get("mod_revision", 0)), create_revision=int(kv.get("create_revision", 0)),
                   lease=int(kv.get("lease", 0))) for kv in resp.get("kvs", [])]

    async def get(self, key: str) -> KV | None:
        kvs = self._kvs(await self._call("/v3/kv/range", {"key": _b64(key)}))
        return kvs[0] if kvs else None

    async def get_prefix(self, prefix: str, limit: int = 0, descending: bool = False, end: str | None = None,
                         keys_only: bool = False, after: str | None = None) -> list[KV]:
        """Keys under prefix in key order (newest first with descending, for time-named keys);
        `end` stops before that key, `after` starts after it (page cursors); `limit` 0 means all.
        etcd 3.5 reads every key of a descending range before it applies the limit: for long
        ranges, name keys so that key order is the order pages are read in (keys.newest_first)."""
        start = after + "\0" if after else prefix
        body: dict = {"key": _b64(start), "range_end": _b64(end or prefix_end(prefix))}
        if limit:
            body["limit"] = str(limit)
        if descending:
            body.update(sort_order="DESCEND", sort_target="KEY")
        if keys_only:
            body["keys_only"] = True
        return self._kvs(await self._call("/v3/kv/range", body))

    async def get_ranges(self, ranges: list[tuple[str, bool | str]]) -> list[list[KV]]:
        """Several reads at one revision: each (key, is_prefix or the range's end) -> its KVs in
        key order. The
        first is read as any read (linearizable); the others at its revision, all at once, from
        the member's own store (a read at a revision it has applied needs no quorum).

        Not one read-only transaction, though that would be one request: etcd before 3.5.5
        panics, and the member exits, when the client of a read-only transaction hangs up while
        the member applies it (etcd-io/etcd#14110). The agents hang up after their 0.5 s
        timeout; the lab's etcd 3.5.1 member of a site just back from a power cut, slow while
        it caught up, died that way (2026-12-05, bench/replication.py)."""
        if not ranges:
            return []
        if len(ranges) > TXN_OPS:  # a bound on a tick's work, as a transaction's was (--max-txn-ops)
            raise EtcdError(f"{len(ranges)} reads are more than one tick may make ({TXN_OPS})")

        def body(key: str, prefix: bool | str) -> dict:
            end = prefix if isinstance(prefix, str) else prefix_end(key) if prefix else None
            return {"key": _b64(key), **({"range_end": _b64(end)} if end else {})}
        first = await self._call("/v3/kv/range", body(*ranges[0]))
        revision = str(first.get("header", {}).get("revision", "0"))
        rest = await asyncio.gather(*(self._call("/v3/kv/range", {**body(k, p), "revision": revision,
                                                                   "serializable": True})
                                      for k, p in ranges[1:]))
        return [self._kvs(first), *(self._kvs(r) for r in rest)]

    async def delete_range(self, start: str, end: str) -> int:
        resp = await self._call("/v3/kv/deleterange", {"key": _b64(start), "range_end": _b64(end)})
        return int(resp.get("deleted", 0) or 0)

    async def alarms(self) -> list[tuple[str, str]]:
        """Active alarms as (member ID, alarm type): NOSPACE, CORRUPT."""
        resp = await self._call("/v3/maintenance/alarm", {"action": "GET"})
        return [(str(a.get("memberID", "")), str(a.get("alarm", ""))) for a in resp.get("alarms", []) or []]

    async def member_status(self, endpoint: str) -> dict:
        """One member's own status (dbSize, dbSizeInUse, header.revision), asked of that member."""
        try:
            r = await self._post(endpoint + "/v3/maintenance/status", {})
        except (httpx.HTTPError, EtcdError) as e:
            raise EtcdError(f"{endpoint}: status: {e!r}") from e
        if r.status_code != 200:
            raise EtcdError(f"{endpoint}: status: HTTP {r.status_code}")
        return r.json()

    async def defragment(self, endpoint: str, timeout: float = 30.0) -> None:
        """Defragment one member (it stops answering while it runs: one member at a time)."""
        try:
            r = await self._post(endpoint + "/v3/maintenance/defragment", {}, timeout=timeout)
        except (httpx.HTTPError, EtcdError) as e:
            raise EtcdError(f"{endpoint}: defragment: {e!r}") from e
        if r.status_code != 200:
            raise EtcdError(f"{endpoint}: defragment: HTTP {r.status_code} {r.text[:200]}")

    async def put(self, key: str, value: str, lease: int = 0) -> int:
        body: dict = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        resp = await self._call("/v3/kv/put", body)
        return int(resp.get("header", {}).get("revision", 0))

    async def put_all(self, pairs: list[tuple[str, str]]) -> None:
        """Many puts, in transactions of at most TXN_OPS (etcd's --max-txn-ops is 128 by default)."""
        for k in range(0, len(pairs), TXN_OPS):
            await self.txn([], [{"request_put": {"key": _b64(key), "value": _b64(value)}}
                                for key, value in pairs[k:k + TXN_OPS]])

    async def delete(self, key: str) -> None:
        await self._call("/v3/kv/deleterange", {"key": _b64(key)})

    async def txn(self, compare: list[dict], success: list[dict], failure: list[dict] | None = None) -> bool:
        resp = await self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(resp.get("succeeded", False))

    async def cas_delete(self, key: str, mod_revision: int) -> bool:
        """Delete key only if nobody changed it since mod_revision."""
        return await self.txn(
            [{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}],
            [{"request_delete_range": {"key": _b64(key)}}])

    async def put_and_delete(self, put_key: str, value: str, put_revision: int, key: str, mod_revision: int) -> bool:
        """Put put_key = value and delete key in one transaction, only if nobody changed either
        since it was read (mod_revision; 0: it did not exist). The put comes first: a watcher
        applying the transaction's events one by one never sees the key gone without the put."""
        return await self.txn(
            [{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)},
             {"key": _b64(put_key), "target": "MOD", "result": "EQUAL", "mod_revision": str(put_revision)}],
            [{"request_put": {"key": _b64(put_key), "value": _b64(value)}},
             {"request_delete_range": {"key": _b64(key)}}])

    async def delete_if_unchanged(self, key: str, mod_revision: int, guard: str, guard_mod_revision: int) -> bool:
        """Delete key only if it and `guard` are as they were read (mod revisions; 0: the guard
        did not exist)."""
        return await self.txn(
            [{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)},
             {"key": _b64(guard), "target": "MOD", "result": "EQUAL", "mod_revision": str(guard_mod_revision)}],
            [{"request_delete_range": {"key": _b64(key)}}])

    async def cas_put(self, key: str, value: str, mod_revision: int, lease: int = 0) -> bool:
        put: dict = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        return await self.txn(
            [{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}],
            [{"request_put": put}])

    async def create(self, key: str, value: str, lease: int = 0) -> bool:
        """Put only if the key does not exist (an election)."""
        put: dict = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        return await self.txn([{"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                              [{"request_put": put}])

    async def leader_and_members(self) -> tuple[str, list[dict]]:
        """The raft leader's member ID and the member list (IDs as strings, with names, client URLs)."""
        status = await self._call("/v3/maintenance/status", {})
        members = (await self._call("/v3/cluster/member/list", {})).get("members", [])
        return str(status.get("leader", "")), [{**m, "ID": str(m.get("ID", ""))} for m in members]

    async def move_leader(self, leader: dict, target_id: str) -> None:
        """Ask the current leader to hand raft leadership to target_id (it must be asked itself)."""
        urls = leader.get("clientURLs") or []
        if not urls:
            raise EtcdError("leader has no client URL")
        try:
            r = await self._post(urls[0] + "/v3/maintenance/transfer-leadership", {"targetID": target_id}, timeout=3.0)
        except (httpx.HTTPError, EtcdError) as e:
            raise EtcdError(f"transfer-leadership: {e!r}") from e
        if r.status_code != 200:
            raise EtcdError(f"transfer-leadership: HTTP {r.status_code} {r.text[:200]}")

    async def grant(self, ttl: int) -> int:
        return int((await self._call("/v3/lease/grant", {"TTL": str(ttl)}))["ID"])

    async def keepalive(self, lease: int) -> int:
        """Refresh a lease; returns the remaining TTL (0 when the lease is gone)."""
        resp = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(resp.get("result", {}).get("TTL", 0) or 0)

    async def revoke(self, lease: int) -> None:
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    async def lease_ttl(self, lease: int) -> int:
        """A lease's remaining TTL without refreshing it; -1 when there is no such lease."""
        resp = await self._call("/v3/lease/timetolive", {"ID": str(lease)})
        return int(resp.get("TTL", -1))

    # -- authentication management (lab set-up, `firebreak ops`): etcd's own users and roles --

    async def user_add(self, name: str, password: str) -> None:
        await self._call("/v3/auth/user/add", {"name": name, "password": password})

    async def role_add(self, role: str) -> None:
        await self._call("/v3/auth/role/add", {"name": role})

    async def role_grant(self, role: str, key: str, *, prefix: bool, perm: str) -> None:
        """perm: READ, WRITE or READWRITE, on one key or (prefix) every key under it."""
        grant = {"permType": perm, "key": _b64(key)}
        if prefix:
            grant["range_end"] = _b64(prefix_end(key))
        await self._call("/v3/auth/role/grant", {"name": role, "perm": grant})

    async def user_grant_role(self, user: str, role: str) -> None:
        await self._call("/v3/auth/user/grant", {"user": user, "role": role})

    async def auth_enable(self) -> None:
        await self._call("/v3/auth/enable", {})
