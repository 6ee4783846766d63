"""How the etcd client logs in to a locked etcd, without processes (httpx's mock transport stands
in for the members): one login at a time however many requests need one, no new login at a
member for a moment after one failed there, and the other members tried meanwhile."""

import asyncio
import json

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firebreak.control import etcd as etcd_mod
from firebreak.control.etcd import Etcd, EtcdAccess
from firebreak.lab import pki

ACCESS = EtcdAccess(user="agent", password="pw")
A, B = "https://a:2379", "https://b:2379"


def _client(handler, endpoints=(A, B)) -> Etcd:
    e = Etcd(list(endpoints), timeout=0.5, access=ACCESS)
    e.client = httpx.AsyncClient(transport=httpx.MockTransport(handler), timeout=0.5)
    return e


def _range_ok() -> httpx.Response:
    return httpx.Response(200, json={"kvs": [], "count": "0"})


def test_concurrent_requests_without_a_token_share_one_login():
    logins = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/auth/authenticate":
            logins.append(str(request.url))
            await asyncio.sleep(0.05)  # a login is slow: bcrypt and a raft commit
            return httpx.Response(200, json={"token": f"t{len(logins)}"})
        assert request.headers["Authorization"] == "t1"
        return _range_ok()

    async def go():
        e = _client(handler)
        await asyncio.gather(*(e.get_prefix("/firebreak/") for _ in range(20)))
        await e.close()
    asyncio.run(go())
    assert len(logins) == 1


def test_an_expired_token_is_replaced_once_for_all_requests_holding_it():
    logins = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/auth/authenticate":
            logins.append(1)
            await asyncio.sleep(0.02)
            return httpx.Response(200, json={"token": f"t{len(logins)}"})
        if request.headers.get("Authorization") != f"t{len(logins)}":
            return httpx.Response(401, json={"error": "etcdserver: invalid auth token", "code": 16})
        return _range_ok()

    async def go():
        e = _client(handler)
        await e.get_prefix("/x/")
        logins.append(1)  # the member now wants a newer token than the one the client holds
        await asyncio.gather(*(e.get_prefix("/x/") for _ in range(10)))
        await e.close()
    asyncio.run(go())
    assert len(logins) == 3  # the first login, the expiry, one login for the ten requests


def test_a_member_whose_login_failed_is_not_asked_again_at_once_and_the_others_answer(monkeypatch):
    # "At once" is LOGIN_BACKOFF of wall time: a loaded machine (CI) can stall a second between
    # the two requests; a minute it cannot.
    monkeypatch.setattr(etcd_mod, "LOGIN_BACKOFF", 60.0)
    asked = []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append((request.url.host, request.url.path))
        if request.url.host == "a":
            raise httpx.ReadTimeout("busy", request=request)
        if request.url.path == "/v3/auth/authenticate":
            return httpx.Response(200, json={"token": "tb"})
        return _range_ok()

    async def go():
        e = _client(handler)
        await e.get_prefix("/x/")
        e._token = ""  # the next request needs a new login: member a is skipped, b answers
        await e.get_prefix("/x/")
        await e.close()
    asyncio.run(go())
    logins_at_a = [p for h, p in asked if h == "a" and p == "/v3/auth/authenticate"]
    assert len(logins_at_a) == 1
    assert asked.count(("b", "/v3/auth/authenticate")) == 2 and asked.count(("b", "/v3/kv/range")) == 2


def test_a_login_gets_longer_than_a_request_but_a_dead_member_fails_as_fast():
    seen = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.extensions["timeout"]
        if request.url.path == "/v3/auth/authenticate":
            return httpx.Response(200, json={"token": "t"})
        return _range_ok()

    async def go():
        e = _client(handler, endpoints=(A,))
        await e.get_prefix("/x/")
        await e.close()
    asyncio.run(go())
    login, request = seen["/v3/auth/authenticate"], seen["/v3/kv/range"]
    assert login["read"] == etcd_mod.LOGIN_TIMEOUT > request["read"] == 0.5
    assert login["connect"] == request["connect"] == 0.5


def test_token_keys_are_a_matching_pair_etcd_can_sign_es256_with():
    keys = pki.token_keys()
    private = serialization.load_pem_private_key(keys.key_pem, password=None)
    public = serialization.load_pem_public_key(keys.cert_pem)
    assert isinstance(private.curve, ec.SECP256R1)
    signature = private.sign(b"token", ec.ECDSA(hashes.SHA256()))
    public.verify(signature, b"token", ec.ECDSA(hashes.SHA256()))  # raises if they do not match
    assert json.dumps(keys.cert_pem.decode()).count("PUBLIC KEY") == 2


def _jwt(exp: float) -> str:
    import base64

    def part(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{part({'alg': 'ES256'})}.{part({'exp': int(exp), 'username': 'agent', 'revision': 2})}.sig"


def test_a_token_says_when_it_expires_if_it_is_signed():
    assert etcd_mod.token_expiry(_jwt(1_900_000_000)) == 1_900_000_000
    assert etcd_mod.token_expiry("mSUBjNoZCljVRfXh.6014") is None   # etcd's simple token
    assert etcd_mod.token_expiry("a.b.c") is None


def test_a_signed_token_is_replaced_before_it_expires_without_holding_up_requests():
    import time
    tokens = [_jwt(time.time() + 30), _jwt(time.time() + 600)]  # the first expires within a minute
    logins, used = [], []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/auth/authenticate":
            logins.append(1)
            await asyncio.sleep(0.05)
            return httpx.Response(200, json={"token": tokens[len(logins) - 1]})
        used.append(request.headers["Authorization"])
        return _range_ok()

    async def go():
        e = _client(handler, endpoints=(A,))
        await e.get_prefix("/x/")          # logs in: a token good for 30 s more, so a renewal starts
        await e.get_prefix("/x/")          # still answered with it while the renewal runs
        while e._renewal is not None:
            await asyncio.sleep(0.01)
        await e.get_prefix("/x/")          # the new token
        await e.get_prefix("/x/")          # good for ten minutes: no more logins
        await e.close()
    asyncio.run(go())
    assert len(logins) == 2
    assert used == [tokens[0], tokens[0], tokens[1], tokens[1]]
