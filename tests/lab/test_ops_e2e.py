"""With one site down, every ops action succeeds from each surviving site's console; without
an operator's token nothing changes, and every attempt is in the audit log."""


import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from firebreak.lab import lab
from firebreak.lab.state import lab_home, load_secrets
from tests.lab.conftest import wait_for

pytestmark = pytest.mark.lab


def act(console, token, action, **body):
    return httpx.post(f"{console}/api/actions/{action}", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {token}"} if token else {})


def test_every_ops_action_from_every_surviving_site_with_one_site_down(running_lab, request):
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    token = load_secrets(lab_home()).ops_token
    down = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "replica")  # keep the primary
    lab.power_off(down)
    # Back on whatever happens: the module's other tests share this lab (a no-op after the test's own).
    request.addfinalizer(lambda: lab.power_on(down))
    # The primary's site first: each site's console evacuates the other survivor, and an evacuation
    # of the primary's site moves the primary (a move this test does not count as a switchover).
    survivors = sorted((n for n in st["sites"] if n != down), key=lambda n: n != st["primary"])
    wait_for(lambda: all(httpx.get(st["sites"][n]["console"] + "/api/status", timeout=3).json()["sites"][down]["dead"]
                         for n in survivors), 30, f"the survivors to agree {down} is dead")

    # an ordinary database client writes through a surviving site's database door all along:
    # each switchover moves it to the new primary, and no write lands anywhere else
    import threading

    import psycopg

    from firebreak.drill import checks
    from firebreak.drill.workload import ORDINARY_TABLE, History, OrdinaryWriter, prepare_ordinary_table
    prepare_ordinary_table(st["postgres_dsn"])
    history, stop = History(), threading.Event()
    writer = OrdinaryWriter(survivors[0], st["db_door_dsns"][survivors[0]], history, stop)
    writer.start()
    switchovers = 0

    # unauthenticated and wrong-token requests change nothing, and are counted, not stored
    c0 = st["sites"][survivors[0]]["console"]
    denied_before = denied_unauthenticated(c0, survivors[0])  # the lab may be shared: earlier modules' floods
    assert act(c0, None, "freeze").status_code == 401
    assert act(c0, "lab.wrong", "freeze").status_code == 401
    assert httpx.get(c0 + "/api/status", timeout=3).json()["frozen"] is False

    for i, site in enumerate(survivors):
        console = st["sites"][site]["console"]
        other = next(n for n in survivors if n != site)
        for action, body in (("freeze", {}), ("unfreeze", {}), ("release", {"version": f"v{i}"}),
                             ("deploy", {"version": f"v{i}"}), ("evacuate", {"site": other}),
                             ("restore", {"site": other})):
            r = act(console, token, action, **body)
            assert r.status_code == 200, (site, action, r.text)
        deployed = r = act(console, token, "deploy", version=f"v{i}").json()
        assert deployed["sites"][down].startswith("skipped") and all(deployed["sites"][n] == "ok" for n in survivors)
        for n in survivors:
            assert httpx.get(st["sites"][n]["app"] + "/version", timeout=3).json()["version"] == f"v{i}"
        # move the primary to the other survivor and back, from this site's console
        primary = lab.status()["primary"]
        target = next(n for n in survivors if n != primary)
        wait_for(lambda: lab.status()["sites"][target]["postgres"]["role"] == "sync_standby", 60,
                 f"{target} to be the synchronous standby again after the last switchover")
        r = act(console, token, "switchover", to=target)
        assert r.status_code == 200, r.text
        switchovers += 1
        wait_for(lambda: lab.status()["primary"] == target, 60, f"the primary to move to {target}")
        wait_for(lambda: any(o.primary == st["sites"][target]["address"] for o in checks.acked(history.ops, "sql")),
                 30, f"the ordinary client to write through the door to {target}")
    stop.set()
    writer.join(timeout=10)
    acked = checks.acked(history.ops, "sql")
    with psycopg.connect(lab.status()["postgres_dsn"]) as conn:
        stored = {row[0] for row in conn.execute(f"SELECT key FROM {ORDINARY_TABLE}")}
    assert acked and checks.lost_writes(history.ops, stored, "sql") == []
    servers = [o.primary for o in sorted(acked, key=lambda o: o.complete)]
    moves = sum(a != b for a, b in zip(servers, servers[1:]))
    assert moves == switchovers, f"writes went back and forth between primaries: {moves} moves, {switchovers} switchovers"

    audit = httpx.get(c0 + "/api/audit?limit=1000", timeout=5).json()
    assert not any(a["who"] == "anonymous" for a in audit)  # anonymous traffic grows nothing in etcd
    assert [a["at"] for a in audit] == sorted((a["at"] for a in audit), reverse=True)  # newest first
    paged, before = [], None  # pages of 3, each older than the last row of the page before it
    for _ in range(3):
        page = httpx.get(c0 + "/api/audit", params={"limit": 3, **({"before": before} if before else {})},
                         timeout=5).json()
        assert len(page) == 3
        paged, before = paged + page, page[-1]["key"]
    assert paged == audit[:9]
    assert denied_unauthenticated(c0, survivors[0]) == denied_before + 2
    assert {a["site"] for a in audit if a["outcome"] == "ok"} >= set(survivors)
    assert {a["action"] for a in audit if a["outcome"] == "ok"} >= {"freeze", "unfreeze", "release", "deploy",
                                                                     "evacuate", "restore", "switchover"}
    lab.power_on(down)
    wait_for(lambda: lab.status()["healthy"], 120, f"{down} to rejoin")


def denied_unauthenticated(console: str, site: str) -> float:
    """The console's count of requests refused as unauthenticated, from its /metrics."""
    families = text_string_to_metric_families(httpx.get(console + "/metrics", timeout=5).text)
    return sum(s.value for f in families if f.name == "firebreak_console_denied"
               for s in f.samples if s.name.endswith("_total") and s.labels == {"site": site, "why": "unauthenticated"})


def served_by(door: str) -> str:
    """The site whose app answered through `door`. Retried once on a dropped connection, as any
    client does: Caddy closes about one connection per reload unanswered (docs/DEPLOY.md), and a
    returning site's routing order reloads every door just after the lab reads healthy."""
    for attempt in range(3):
        try:
            return httpx.get(door + "/healthz", timeout=3).headers.get("x-firebreak-site", "?")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
            if attempt == 2:
                raise
            time.sleep(0.2)


def test_doors_follow_the_routing_table(running_lab):
    """Each site's door sends to its own app first, away from an evacuated site's app and
    never to a dead site's; restoring the site brings its traffic home."""
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    token = load_secrets(lab_home()).ops_token
    names = list(st["sites"])
    doors = {n: st["sites"][n]["door"] for n in names}
    assert all(served_by(doors[n]) == n for n in names)
    console = st["sites"][names[0]]["console"]
    drained = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "replica")
    try:
        assert act(console, token, "evacuate", site=drained).status_code == 200
        wait_for(lambda: served_by(doors[drained]) != drained, 10, f"{drained}'s door to send its traffic away")
        assert all(served_by(doors[n]) == n for n in names if n != drained)
        routing = httpx.get(console + "/api/routing", timeout=3).json()
        assert drained not in routing["doors"] and set(routing["doors"]) == set(names) - {drained}
    finally:
        assert act(console, token, "restore", site=drained).status_code == 200
    wait_for(lambda: served_by(doors[drained]) == drained, 10, f"{drained}'s door to serve its own app again")


def test_a_door_takes_new_orders_without_dropping_a_new_connection(running_lab):
    """Every evacuation, failover and return gives each door a new routing order. Caddy binds a
    new listener beside the old and closes the old, which reset the connections queued on it
    (1 CI run in 5 failed on it); the lab's namespaces hand them to the new listener. HAProxy (the
    lab's default door) takes an order through its runtime API, with no new listener at all.
    Ordinary clients open connections to a door while it takes 40 orders; none is reset. (Caddy
    without the setting: 422 of 144,270 such connections reset while a door took 310.)"""
    import asyncio
    import socket
    import threading

    from firebreak.control import haproxy_api
    from firebreak.lab import state as lab_state

    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    if st["net"] != "netns":
        pytest.skip("needs the lab's own network namespaces (root): the host's settings are not the lab's to change")
    layout = lab_state.load().layout
    site = layout.sites[0]
    migrate = subprocess.run(["ip", "netns", "exec", site.netns, "cat", "/proc/sys/net/ipv4/tcp_migrate_req"],
                             capture_output=True, text=True)
    assert migrate.stdout.strip() == "1", migrate.stderr
    host, port = st["sites"][site.name]["door"].removeprefix("http://").split(":")
    socket_path = site.door_admin.removeprefix("unix/")
    other = next(s.name for s in layout.sites if s is not site)
    if st["door_kind"] == "haproxy":
        # a backup server's state, to and fro: an order the door applies, as a drain is
        orders = [f"set server apps/{other} state {'maint' if i % 2 == 0 else 'ready'}" for i in range(40)]

        def take(i: int) -> None:
            assert asyncio.run(haproxy_api.send(socket_path, orders[i])) == ""

        def restore() -> None:
            asyncio.run(haproxy_api.send(socket_path, f"set server apps/{other} state ready"))
    else:
        admin = httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), timeout=5)
        config = admin.get("http://localhost/config/").json()

        def take(i: int) -> None:  # a change Caddy cannot skip as "unchanged": the grace period
            r = admin.post("http://localhost/load", json={**config, "apps": {**config["apps"], "http": {
                **config["apps"]["http"], "grace_period": f"{1 + i % 2}s"}}})
            assert r.status_code == 200, r.text

        def restore() -> None:
            admin.post("http://localhost/load", json=config)  # the agent's own order back at once
    stop, outcomes = threading.Event(), {"ok": 0, "reset": 0, "other": []}

    def client():
        while not stop.is_set():
            try:
                with socket.create_connection((host, int(port)), timeout=5) as c:
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: door\r\nConnection: close\r\n\r\n")
                    head = c.recv(12)
                if head.startswith(b"HTTP/1.1 "):
                    outcomes["ok"] += 1
                else:  # Caddy 2.11 closes about one per reload unanswered: not a reset (docs/DEPLOY.md)
                    outcomes["other"].append(repr(head))
            except ConnectionResetError:
                outcomes["reset"] += 1
            except OSError as e:
                outcomes["other"].append(repr(e))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        for i in range(40):
            take(i)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in clients:
            t.join(10)
        restore()
    assert outcomes["reset"] == 0 and outcomes["ok"] > 100, outcomes
    if st["door_kind"] == "haproxy":
        assert outcomes["other"] == [], outcomes["other"][:5]  # no reload, so nothing closed unanswered


def test_the_console_page_shows_every_site(running_lab):
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    page = httpx.get(st["sites"]["ansan"]["console"] + "/", timeout=5).text
    assert "Firebreak console" in page and all(n in page for n in st["sites"])
    assert "Sign in" in page and "/actions/switchover" not in page  # no actions before login


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_an_operator_signs_in_and_freezes_from_the_console_in_a_real_browser(running_lab, tmp_path):
    from playwright.sync_api import sync_playwright

    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    console = st["sites"]["siheung"]["console"]
    name, secret = load_secrets(lab_home()).ops_token.split(".", 1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(console + "/")
        assert page.get_by_role("button", name="Freeze automation").count() == 0  # not before login
        page.get_by_label("Operator").fill(name)
        page.get_by_label("Token").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        assert "login failed" in page.content()
        page.get_by_label("Operator").fill(name)
        page.get_by_label("Token").fill(secret)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Freeze automation").click()
        assert "freeze: done" in page.content() and "frozen" in page.content()
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        page.get_by_role("button", name="Unfreeze automation").click()
        assert "unfreeze: done" in page.content()
        # a forged cross-site form post (no CSRF token) is refused and changes nothing
        r = page.request.post(console + "/actions/freeze", form={"csrf": "forged"}, max_redirects=0)
        assert r.status == 303
        assert httpx.get(console + "/api/status", timeout=3).json()["frozen"] is False
        browser.close()
    audit = httpx.get(console + "/api/audit", timeout=3).json()
    assert any(a["action"] == "freeze" and a["who"] == name and a["outcome"] == "ok" for a in audit)
    # the forged post had no operator behind it: counted in /metrics, never stored in etcd
    assert not any(a["action"] == "freeze" and a["who"] == "anonymous" for a in audit)
    assert 'why="unauthenticated"' in httpx.get(console + "/metrics", timeout=3).text


def test_etcd_is_locked_each_role_has_only_its_keys_and_etcdctl_follows_lab_status(running_lab):
    """TLS with the lab's CA and a client certificate, then an etcd user per role: an anonymous
    client is refused, and a role's credentials reach only its own keys."""
    import asyncio
    import os
    import ssl
    import subprocess

    from firebreak.control.etcd import Etcd, EtcdAccess, EtcdError
    from firebreak.lab.runtime import etcd_binary

    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    locked = st["etcd_access"]
    endpoint = st["etcd_endpoints"][0]
    roles = {r: EtcdAccess.from_file(d["access_file"]) for r, d in locked["roles"].items()}
    roles["agent"] = roles[locked["agents"][next(iter(st["sites"]))]]  # one site's agent stands for all

    # No client certificate: refused at the TLS handshake, before any request.
    with pytest.raises(httpx.HTTPError):
        httpx.post(endpoint + "/v3/kv/range", json={"key": "Lw=="}, timeout=5,
                   verify=ssl.create_default_context(cafile=roles["root"].ca))
    # A certificate but no user: etcd names no one, and answers nothing.
    no_user = EtcdAccess(roles["root"].ca, roles["root"].cert, roles["root"].key)
    r = httpx.post(endpoint + "/v3/kv/range", json={"key": "Lw=="}, verify=no_user.ssl_context(), timeout=5)
    assert r.status_code != 200 and "user name is empty" in r.text

    async def attempt(role: str, key: str, write: bool) -> str:
        etcd = Etcd(st["etcd_endpoints"], timeout=3, access=roles[role])
        try:
            if write:
                await etcd.put(key, "x")
            else:
                await etcd.get_prefix(key, keys_only=True)
            return "allowed"
        except EtcdError as e:
            return "denied" if "denied" in str(e) else f"error: {e}"
        finally:
            await etcd.close()

    cases = [  # role, key, write, expected
        ("claims", "/firebreak/ledger/", False, "allowed"),
        ("claims", "/firebreak/operators/", False, "denied"),          # no reading operators' hashes
        ("claims", "/firebreak/ledger/forged", True, "denied"),        # nor forging an outage
        ("patroni", "/firebreak/operators/evil", True, "denied"),
        ("patroni", "/service/firebreak/", False, "allowed"),
        ("agent", "/service/firebreak/config", True, "denied"),        # Patroni's settings are not the agents'
        ("agent", "/service/firebreak/", False, "allowed"),
        ("ops", "/service/firebreak/leader", True, "denied"),
    ]
    got = [(role, key, write, asyncio.run(attempt(role, key, write))) for role, key, write, _ in cases]
    assert got == cases

    # etcdctl, pointed at what `lab status --json` lists, as root; and without a user, refused.
    root = locked["roles"]["root"]
    base = [etcd_binary(name="etcdctl"), "--endpoints", ",".join(st["etcd_endpoints"]), "--cacert", locked["ca"],
            "--cert", root["cert"], "--key", root["key"], "--command-timeout=5s"]
    password = open(root["password_file"]).read().strip()
    ok = subprocess.run(base + ["--user", f"root:{password}", "get", "/firebreak/views/", "--prefix", "--keys-only"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "/firebreak/views/" in ok.stdout, ok.stderr
    anonymous = subprocess.run(base + ["get", "/firebreak/", "--prefix"], capture_output=True, text=True, timeout=30)
    assert anonymous.returncode != 0 and "permission denied" in anonymous.stderr
    # Every key and password is its owner's alone.
    for d in locked["roles"].values():
        for secret in (d["key"], d["password_file"]):
            assert os.stat(secret).st_mode & 0o777 == 0o600, secret


def test_an_etcd_token_stays_good_at_a_member_that_restarted(running_lab):
    """A site's power coming back restarts its etcd member. With etcd's default simple tokens the
    member forgot every token, every client logged in again at once, and the logins (bcrypt and a
    raft commit each) kept every site's agents from etcd for 20 s. The lab's signed tokens stay
    good at a member that restarted: no client needs a new login."""
    import asyncio

    from firebreak.control.etcd import Etcd, EtcdAccess

    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    endpoint = st["etcd_endpoints"][0]
    site = next(n for n, s in st["sites"].items() if f"//{s['address']}:" in endpoint)
    agent = EtcdAccess.from_file(st["etcd_access"]["roles"][st["etcd_access"]["agents"][site]]["access_file"])

    async def token() -> str:
        etcd = Etcd([endpoint], timeout=5, access=agent)
        try:
            await etcd.get_prefix("/firebreak/views/", keys_only=True)
            return etcd._token
        finally:
            await etcd.close()
    held = asyncio.run(token())

    def read_with(tok: str) -> httpx.Response:
        return httpx.post(endpoint + "/v3/kv/range", json={"key": "L2ZpcmVicmVhay8=", "keys_only": True},
                          headers={"Authorization": tok}, verify=agent.ssl_context(), timeout=5)
    assert read_with(held).status_code == 200

    assert lab.stop_component(site, "etcd") == 1
    lab.start_component(site, "etcd")
    def answered() -> httpx.Response | None:
        r = _quietly(read_with, held)  # None while the member is still starting
        return r if r is not None and (r.status_code == 200 or "auth" in r.text) else None
    answer = wait_for(answered, 60, f"{site}'s etcd member to answer after its restart")
    assert answer.status_code == 200, answer.text  # the token from before the restart, no new login
    wait_for(lambda: lab.status()["healthy"], 90, "the lab healthy again")


def _quietly(call, *args):
    try:
        return call(*args)
    except httpx.HTTPError:
        return None
