"""`firebreak pki` against a real etcd: one member started with the certificates pki wrote into a
rendered tree (client port: the member's certificate, the client CA; peer port: the peer
certificate, the peer CA only; signed tokens with pki's token keys). etcd itself answers:

- `pki users` makes every role's user and grants from role_grants and turns authentication on;
  a second run changes nothing; each agent logs in with the password the renderer wrote for it
  and may write its own view, not another site's;
- a client certificate (client CA) is refused at the peer port; the peer certificate is not;
- a rotation while etcd runs: the next handshake shows the new server certificate, a client
  with its new certificate is let in, and a client connected before keeps working;
- a client CA rollover: with both CAs in the bundle (etcd restarted: it reads its CA file only at
  start) a certificate of either CA is let in; once retired (and restarted) the old CA's is not.

One member on free loopback ports in a temporary directory; always stopped by its PID."""

import asyncio
import datetime as dt
import json
import shutil
import socket
import ssl
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from firebreak.control.etcd import Etcd, EtcdAccess
from firebreak.control.keys import Keys, PatroniKeys, role_grants
from firebreak.deploy.inventory import load_inventory
from firebreak.deploy.render import render
from firebreak.deploy.secrets import dump, make_secrets
from firebreak.errors import EtcdError
from firebreak.lab import procs, runtime
from firebreak.pki import etcd_users, plan, store, x509
from tests.conftest import run_cli
from tests.web.conftest import free_port

INVENTORY = """
sites:
  gwangju:
    hosts:
      gj-1: {address: 127.0.0.1, roles: [etcd, postgres, agent, door, db-door, claims]}
  daejeon:
    hosts:
      dj-1: {address: 127.0.0.12, roles: [etcd, postgres, agent, door, db-door, claims]}
  busan:
    hosts:
      bs-1: {address: 127.0.0.13, roles: [etcd, postgres, agent, door, db-door, claims]}
settings:
  etcd: {admin_on_agents: false}
"""
HOST = "gj-1"   # the member this test starts (its address is 127.0.0.1)


def _now():
    return dt.datetime.now(dt.timezone.utc)


class Member:
    """One etcd member run from the tree's files, restartable (a CA file is read only at start)."""

    def __init__(self, home: Path, s: store.Store):
        self.home, self.s = home, s
        self.url, self.peer = f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}"
        self.proc = None

    def f(self, path: str) -> str:
        return str(self.s.at(HOST, path))

    def start(self) -> None:
        tok_pub, tok_key = (self.f(p) for p in plan.TOKEN)
        argv = [runtime.etcd_binary(), "--name", "gwangju", "--data-dir", str(self.home / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer, "--initial-advertise-peer-urls", self.peer,
                "--initial-cluster", f"gwangju={self.peer}", "--log-level", "warn", "--logger", "zap",
                "--cert-file", self.f(plan.MEMBER[0]), "--key-file", self.f(plan.MEMBER[1]),
                "--client-cert-auth", "--trusted-ca-file", self.f("/etc/firebreak/pki/ca.pem"),
                "--peer-cert-file", self.f(plan.PEER[0]), "--peer-key-file", self.f(plan.PEER[1]),
                "--peer-client-cert-auth", "--peer-trusted-ca-file", self.f(plan.PEER_CA),
                "--auth-token", f"jwt,pub-key={tok_pub},priv-key={tok_key},sign-method=ES256,ttl=600s"]
        self.proc = procs.spawn(argv, site="gwangju", component="etcd", lab_id="pki-" + self.home.name,
                                log=self.home / "etcd.log")
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(self.url + "/v3/maintenance/status", json={}, verify=self.tls("root").ssl_context(),
                           timeout=1)
                return  # any HTTP answer: the member serves TLS with these files
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("test etcd did not start:\n" + (self.home / "etcd.log").read_text())
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            procs.terminate([self.proc.pid], timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tls(self, role: str) -> EtcdAccess:
        """A role's certificate and key from the tree (root's from the operator's directory)."""
        if role == "root":
            d = self.s.pki / "operator" / "root"
            return EtcdAccess(str(self.s.pki / "operator/ca.pem"), str(d / "client.pem"), str(d / "client-key.pem"))
        d = f"/etc/firebreak/etcd/{role}"
        return EtcdAccess(self.f("/etc/firebreak/pki/ca.pem"), self.f(f"{d}/client.pem"), self.f(f"{d}/client-key.pem"))


@pytest.fixture(scope="module")
def estate():
    home = Path(tempfile.mkdtemp(prefix="firebreak-pki-etcd-"))
    (home / "inventory.yml").write_text(textwrap.dedent(INVENTORY).lstrip("\n"))
    inv = load_inventory(home / "inventory.yml")
    secrets = make_secrets(inv.names)
    for rel, f in render(inv, secrets).items():
        p = home / "out" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f.content)
    s = store.Store(home / "pki", home / "out")
    store.init(s, now=_now(), days=3650, name="Test")
    store.issue(s, plan.leaves(inv), now=_now(), days=365, within=dt.timedelta(0))
    store.distribute(s, plan.bundles(inv), [h.name for h in plan.token_hosts(inv)], secrets.etcd["root"])
    m = Member(home, s)
    m.start()
    try:
        yield inv, secrets, s, m
    finally:
        m.stop()
        shutil.rmtree(home, ignore_errors=True)


def _want(inv):
    return role_grants(Keys(), tuple(PatroniKeys.of(c.scope) for c in inv.clusters), sites=inv.names)


def _access(m: Member, secrets, role: str) -> EtcdAccess:
    t = m.tls(role)
    return EtcdAccess(t.ca, t.cert, t.key, role, secrets.etcd[role])


async def _put(m, secrets, role, key):
    etcd = Etcd([m.url], timeout=5, access=_access(m, secrets, role))
    try:
        await etcd.put(key, "{}")
        return True
    except EtcdError as e:
        if "denied" in str(e):
            return False
        raise
    finally:
        await etcd.close()


def _served_serial(m: Member) -> int:
    """The serial of the certificate the member shows on a new handshake."""
    t = m.tls("agent-gwangju")
    ctx = ssl.create_default_context(cafile=t.ca)
    ctx.load_cert_chain(t.cert, t.key)
    host, port = m.url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509 as cx509
    return cx509.load_der_x509_certificate(der).serial_number


def _handshake(url: str, ca: str, cert: str, key: str) -> bool:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    host, port = url.removeprefix("https://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
            tls.do_handshake()
            # TLS 1.2 (etcd's maximum): a refused client certificate ends the handshake itself.
            tls.sendall(b"\x00")
            tls.recv(1)
        return True
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False
    except (TimeoutError, socket.timeout):
        return True  # accepted and waiting for a peer message


def test_users_made_from_role_grants_and_a_second_run_changes_nothing(estate):
    inv, secrets, s, m = estate
    todo, _ = asyncio.run(etcd_users.apply([m.url], EtcdAccess.from_file(s.pki / "operator/root/access.json"),
                                           _want(inv), dict(secrets.etcd)))
    assert [c.op for c in todo][-1] == "auth_enable"
    assert {c.name for c in todo if c.op == "user_add"} == {"root", "patroni", "claims", "ops",
                                                            "agent-gwangju", "agent-daejeon", "agent-busan"}
    again, notes = asyncio.run(etcd_users.apply([m.url], EtcdAccess.from_file(s.pki / "operator/root/access.json"),
                                                _want(inv), dict(secrets.etcd)))
    assert again == [] and notes == []
    # Each agent logs in with the password the renderer wrote for it (on the host that holds it).
    pw = (s.at("gj-1", "/etc/firebreak/etcd/agent-gwangju/password")).read_text().strip()
    assert pw == secrets.etcd["agent-gwangju"]
    view = Keys().view
    assert asyncio.run(_put(m, secrets, "agent-gwangju", view("gwangju"))) is True
    assert asyncio.run(_put(m, secrets, "agent-gwangju", view("daejeon"))) is False
    assert asyncio.run(_put(m, secrets, "agent-gwangju", Keys().frozen)) is False
    assert asyncio.run(_put(m, secrets, "ops", Keys().frozen)) is True
    # The command, as an operator runs it: nothing left to change.
    secrets_file = s.pki.parent / "secrets.yml"
    store.write_atomic(secrets_file, dump(secrets).encode(), 0o600)
    r = run_cli("pki", "users", "--inventory", str(s.pki.parent / "inventory.yml"), "--dir", str(s.pki),
                "--secrets", str(secrets_file), "--endpoints", m.url, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changes"] == []


def test_a_client_certificate_is_refused_at_the_peer_port(estate):
    inv, secrets, s, m = estate
    agent = m.tls("agent-gwangju")
    member = (m.f(plan.MEMBER[0]), m.f(plan.MEMBER[1]))
    peer_ca = m.f(plan.PEER_CA)
    assert _handshake(m.peer, peer_ca, m.f(plan.PEER[0]), m.f(plan.PEER[1])) is True
    assert _handshake(m.peer, peer_ca, agent.cert, agent.key) is False
    # Even the member's own client-port certificate (client CA) is no peer.
    assert _handshake(m.peer, peer_ca, *member) is False


def test_rotation_while_running_the_next_connection_sees_it(estate):
    inv, secrets, s, m = estate
    before = _served_serial(m)

    async def go():
        # A client connected before the rotation...
        early = Etcd([m.url], timeout=5, access=_access(m, secrets, "agent-gwangju"))
        await early.get(Keys().frozen)
        store.issue(s, plan.leaves(inv), now=_now(), days=365, within=dt.timedelta(0), rotate=True)
        # ...keeps working; a new one with the new certificate is let in.
        await early.get(Keys().frozen)
        late = Etcd([m.url], timeout=5, access=_access(m, secrets, "agent-gwangju"))
        await late.put(Keys().view("gwangju"), "{}")
        await early.close()
        await late.close()
    asyncio.run(go())
    after = _served_serial(m)
    assert after != before
    assert after == x509.facts(Path(m.f(plan.MEMBER[0])).read_bytes(), "member").serial


def test_client_ca_rollover_trusts_both_then_only_the_new(estate):
    inv, secrets, s, m = estate
    keep = s.pki / "old-agent"
    keep.mkdir()
    t = m.tls("agent-gwangju")
    shutil.copy(t.cert, keep / "client.pem")
    shutil.copy(t.key, keep / "client-key.pem")
    old = EtcdAccess(t.ca, str(keep / "client.pem"), str(keep / "client-key.pem"), "agent-gwangju",
                     secrets.etcd["agent-gwangju"])

    async def works(access: EtcdAccess) -> bool:
        etcd = Etcd([m.url], timeout=5, access=access)
        try:
            await etcd.get(Keys().frozen)
            return True
        except (EtcdError, httpx.HTTPError):
            return False
        finally:
            await etcd.close()

    store.begin_rollover(s, "client", now=_now(), days=3650, name="Test")
    store.distribute(s, plan.bundles(inv), [], None)
    m.restart()
    store.issue(s, plan.leaves(inv), now=_now(), days=365, within=dt.timedelta(0))  # re-signed by the new CA
    new = _access(m, secrets, "agent-gwangju")
    old = EtcdAccess(new.ca, old.cert, old.key, old.user, old.password)  # trusting both, showing the old one
    assert asyncio.run(works(new)) and asyncio.run(works(old))
    store.retire(s, "client", plan.leaves(inv))
    store.distribute(s, plan.bundles(inv), [], None)
    m.restart()
    assert asyncio.run(works(_access(m, secrets, "agent-gwangju")))
    assert not asyncio.run(works(old))
