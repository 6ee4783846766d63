"""The front door's configuration is a pure function of the routing order."""

import asyncio

import httpx
import pytest

from firebreak.control.door import DoorKeeper, admin_listen, dial_of, door_config, socket_path
from firebreak.control.ops import routing
from firebreak.errors import InputError

SITES = ["pangyo", "ansan", "siheung"]
APPS = {"pangyo": "http://10.77.0.11:18080", "ansan": "http://10.77.0.12:18080", "siheung": "http://10.77.0.13:18080"}


def upstream_sites(config: dict, apps: dict[str, str]) -> list[str]:
    """The sites a door configuration sends to, in order."""
    by_dial = {dial_of(url): s for s, url in apps.items()}
    handler = config["apps"]["http"]["servers"]["door"]["routes"][0]["handle"][0]
    return [by_dial.get(u["dial"], u["dial"]) for u in handler["upstreams"]]


def config_for(site, dead=(), drained=()):
    order = routing(SITES, site, set(dead), set(drained))["for_this_site"]
    return door_config(site, order, APPS, "10.77.0.12:18000", "127.0.0.1:18019")


@pytest.mark.parametrize("site,dead,drained,expected", [
    ("ansan", (), (), ["ansan", "pangyo", "siheung"]),          # own site first
    ("ansan", ("pangyo",), (), ["ansan", "siheung"]),          # a site the routing table calls dead gets nothing
    ("ansan", (), ("ansan",), ["pangyo", "siheung"]),          # an evacuated site sends its traffic away
    ("ansan", ("pangyo",), ("siheung",), ["ansan"]),
    ("ansan", ("pangyo", "siheung"), ("ansan",), ["ansan"]),   # nothing serving: still its own app, never empty
])
def test_door_sends_to_living_sites_own_first(site, dead, drained, expected):
    assert upstream_sites(config_for(site, dead, drained), APPS) == expected


def test_door_config_is_what_caddy_needs():
    cfg = config_for("ansan")
    server = cfg["apps"]["http"]["servers"]["door"]
    assert server["listen"] == ["10.77.0.12:18000"]
    assert cfg["admin"]["listen"] == "127.0.0.1:18019"
    assert cfg["admin"]["origins"] == ["127.0.0.1:18019"]  # Caddy refuses other Host headers
    handler = server["routes"][0]["handle"][0]
    assert handler["load_balancing"]["selection_policy"]["policy"] == "first"
    assert handler["health_checks"]["active"]["uri"] == "/healthz"
    assert handler["headers"]["response"]["set"]["X-Firebreak-Door"] == ["ansan"]
    # More idle connections to the app than a door has requests in flight: none is reopened per request.
    assert handler["transport"]["keep_alive"]["max_idle_conns_per_host"] >= 256


def test_the_door_lets_an_idle_connection_go_before_the_app_would():
    """The app closes a connection idle for APP_IDLE_S; a door that kept it longer could send a
    request on it as it closes (a 502 for a POST Go's transport will not send again)."""
    from firebreak.keepalive import APP_IDLE_S

    idle = config_for("ansan")["apps"]["http"]["servers"]["door"]["routes"][0]["handle"][0]["transport"][
        "keep_alive"]["idle_timeout"]
    assert idle.endswith("s") and 0 < float(idle[:-1]) <= APP_IDLE_S - 5


def test_routing_lists_serving_doors_best_first():
    doors = {s: url.replace("18080", "18000") for s, url in APPS.items()}
    r = routing(SITES, "siheung", {"pangyo"}, set(), doors)
    assert list(r["doors"]) == ["siheung", "ansan"]


@pytest.mark.parametrize("url", ["http://host", "not a url", "http://:80"])
def test_dial_needs_host_and_port(url):
    with pytest.raises(InputError, match="host and a port"):
        dial_of(url)


def test_keeper_pushes_changes_and_refreshes_a_restarted_door():
    loads = []

    def handler(request: httpx.Request) -> httpx.Response:
        loads.append(request.content)
        return httpx.Response(200)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            keeper = DoorKeeper("http://127.0.0.1:18019", http)
            a, b = config_for("ansan"), config_for("ansan", dead=("pangyo",))
            assert await keeper.push(a, ["ansan"], now=0.0)
            assert not await keeper.push(a, ["ansan"], now=1.0)          # unchanged: nothing sent
            assert await keeper.push(b, ["ansan"], now=2.0)              # changed: sent at once
            assert await keeper.push(b, ["ansan"], now=2.0 + keeper.REFRESH + 0.1)  # refreshed
    asyncio.run(go())
    assert len(loads) == 3


def test_the_rendered_agent_example_names_a_socket_admin_with_its_mode():
    import yaml

    from firebreak.control.config import AgentConfig
    from tests.conftest import ROOT

    text = (ROOT / "deploy" / "example" / "gj-1" / "etc" / "firebreak" / "agent.yml").read_text()
    cfg = AgentConfig.model_validate(yaml.safe_load(text))
    # a socket only Caddy's group opens, in Caddy's `path|mode` form
    assert cfg.door is not None and cfg.door.admin == "unix//run/firebreak-door/admin.sock|0220"
    assert socket_path(cfg.door.admin) == "/run/firebreak-door/admin.sock"


def test_keeper_retries_a_refusing_door_and_says_so_once(caplog):
    answers = iter([403, 403, 403, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={"error": "host not allowed"})

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            keeper = DoorKeeper("http://127.0.12.1:18019", http)
            cfg = config_for("ansan")
            results = [await keeper.push(cfg, ["ansan"], now=float(i)) for i in range(4)]
            return results, keeper
    with caplog.at_level("ERROR", logger="firebreak.door"):
        results, keeper = asyncio.run(go())
    assert results == [False, False, False, True] and keeper.order == ["ansan"]
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_the_admin_api_on_a_unix_socket_has_no_tcp_listener_and_no_origins():
    cfg = door_config("ansan", ["ansan"], {"ansan": "http://10.77.0.12:18080"}, "10.77.0.12:18000",
                      admin_listen("unix//var/lib/firebreak/ansan/run/door-admin.sock"))
    assert cfg["admin"] == {"listen": "unix//var/lib/firebreak/ansan/run/door-admin.sock"}
    tcp = door_config("ansan", ["ansan"], {"ansan": "http://10.77.0.12:18080"}, "10.77.0.12:18000",
                      admin_listen("http://127.0.0.1:2019"))
    assert tcp["admin"] == {"listen": "127.0.0.1:2019", "origins": ["127.0.0.1:2019"]}


def test_a_doors_log_leaves_out_the_admin_requests_the_agent_repeats():
    # the keeper pushes every REFRESH seconds; Caddy would log three lines for each
    cfg = door_config("ansan", ["ansan"], {"ansan": "http://10.77.0.12:18080"}, "10.77.0.12:18000",
                      admin_listen("unix//var/lib/firebreak/ansan/run/door-admin.sock"))
    assert cfg["logging"] == {"logs": {"default": {"exclude": ["admin.api"]}}}


def test_the_keeper_talks_to_a_socket_admin_through_a_unix_transport():
    keeper = DoorKeeper("unix//tmp/nowhere/door-admin.sock", httpx.AsyncClient())
    assert keeper.admin_url == "http://localhost" and keeper.http is not None


@pytest.mark.parametrize("suffix", ["", "|0220"])
def test_the_keeper_pushes_through_a_socket_named_with_or_without_its_mode(suffix):
    """Caddy's `unix//path|mode` (what deploy render writes) is a mode for Caddy to create the
    socket with; the keeper connects to the path alone. A real socket answers here."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="fb-door-", dir="/tmp")  # a short path: unix sockets allow ~100 bytes
    sock = f"{d}/admin.sock"
    seen: list[bytes] = []

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), b"0"))
        seen.append(head.split(b"\r\n")[0] + b" " + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def go():
        server = await asyncio.start_unix_server(handle, path=sock)
        async with server, httpx.AsyncClient() as http:
            keeper = DoorKeeper(f"unix/{sock}{suffix}", http)
            return await keeper.push(config_for("ansan"), ["ansan"], now=0.0), keeper.last_error

    try:
        pushed, error = asyncio.run(go())
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert pushed and error == ""
    assert len(seen) == 1 and seen[0].startswith(b"POST /load HTTP/1.1 {")


def test_secret_files_are_private_from_their_first_byte(tmp_path):
    import os
    import stat

    from firebreak.lab.state import write_private

    path = tmp_path / "agent.yml"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "patroni_password: s3cret\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "s3cret" in path.read_text()


def test_a_door_with_tls_serves_the_same_routes_over_https_with_its_certificate(tmp_path):
    import json
    import subprocess

    from firebreak.control.door import DoorTLS
    from firebreak.lab import pki
    from firebreak.lab.runtime import venv_bin

    issued = pki.issue(pki.make_ca("lab CA"), "door.ansan", ips=["127.0.0.1"], server=True, client=False)
    pki.write(issued, tmp_path / "door.pem", tmp_path / "door-key.pem")
    tls = DoorTLS("127.0.0.1:18443", str(tmp_path / "door.pem"), str(tmp_path / "door-key.pem"))
    order = routing(SITES, "ansan", set(), set())["for_this_site"]
    cfg = door_config("ansan", order, APPS, "127.0.0.1:18000", "127.0.0.1:18019", tls)
    servers = cfg["apps"]["http"]["servers"]
    assert servers["door_tls"]["listen"] == ["127.0.0.1:18443"]
    assert servers["door_tls"]["routes"] == servers["door"]["routes"]
    assert cfg["apps"]["tls"]["certificates"]["load_files"][0]["certificate"] == tls.cert
    assert "door_tls" not in door_config("ansan", order, APPS, "127.0.0.1:18000", "127.0.0.1:18019")["apps"]["http"]["servers"]
    # and Caddy itself accepts it
    (tmp_path / "door.json").write_text(json.dumps(cfg))
    r = subprocess.run([venv_bin("caddy"), "validate", "--config", str(tmp_path / "door.json")],
                       capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                                        "XDG_DATA_HOME": str(tmp_path),
                                                                        "XDG_CONFIG_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-600:]
