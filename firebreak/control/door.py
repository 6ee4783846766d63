"""Each site's front door: a Caddy reverse proxy in front of the reference service.

`door_config` is a pure function from the routing order to Caddy's JSON configuration; the agent
pushes it to Caddy's admin API (a unix socket only its user can open) when the order changes, which is when operators
drain or restore a site. Dead sites are Caddy's to skip: an upstream that refuses connections or
fails its health check (every 0.5 s) gets no requests, so a door stops sending to a dead app
within a second, without the reload that removing it would cost (see Agent.door_loop).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from firebreak.errors import InputError
from firebreak.keepalive import DOOR_IDLE_S

log = logging.getLogger("firebreak.door")

# Requests that could not be connected are retried on the next upstream for this long. A
# request the app accepted is never replayed by the door (Caddy retries only GETs after that):
# writes carry an idempotency key and their own client decides.
TRY_DURATION = "2s"
# Idle connections kept to each app. Caddy's default, 32, is below the requests a door has in
# flight under intake (each waits for its group commit) plus held refusals: past it, every
# finished request closed its connection and the next opened one, a TCP handshake and a new
# protocol object in the app's Python each time; measured locally, 11% fewer reports a second.
UPSTREAM_IDLE_CONNS = 512
# The door lets an idle connection to an app go before the app would (firebreak/keepalive.py).
UPSTREAM_IDLE_TIMEOUT = f"{DOOR_IDLE_S}s"


def dial_of(url: str) -> str:
    """Caddy's `dial` (host:port) for a URL. The agent's configuration checks its URLs at load
    (control/config.py), so this refuses only URLs that came some other way."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port:
        raise InputError(f"'{url}' needs a host and a port, like http://10.0.0.5:8080")
    return f"{parts.hostname}:{parts.port}"


def admin_listen(admin: str) -> str:
    """Caddy's `admin.listen` for an admin address: a unix socket (`unix//path`, reachable only by
    the user Caddy runs as: the socket is created mode 0200) or a loopback URL."""
    return admin if admin.startswith("unix/") else dial_of(admin)


def socket_path(admin: str) -> str:
    """The file of a `unix//path` or `unix//path|mode` admin address."""
    return admin.removeprefix("unix/").split("|", 1)[0]


def admin_client(admin: str, http: httpx.AsyncClient) -> tuple[httpx.AsyncClient, str]:
    """A client and base URL for Caddy's admin API at `admin` (a unix socket or a URL). A socket
    may carry the file mode Caddy creates it with (`unix//path|0220`, as deploy render writes it):
    the mode is Caddy's business, the path is where to connect."""
    if admin.startswith("unix/"):
        path = socket_path(admin)
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path)), "http://localhost"
    return http, admin.rstrip("/")


@dataclass(frozen=True)
class DoorTLS:
    """The door's HTTPS listener and its certificate (the lab's CA issues one per door)."""
    listen: str
    cert: str
    key: str


def door_config(site: str, order: list[str], apps: dict[str, str], listen: str, admin: str,
                tls: DoorTLS | None = None, services: dict[str, dict[str, str]] | None = None) -> dict:
    """Caddy's configuration for `site`'s door: `order` lists the sites whose apps get traffic,
    best first (this site's own first, if it is serving). An empty order still serves this
    site's own app: a door that answers 502 tells a client more than one that is gone. With
    `tls`, the same routes are also served over HTTPS (where reviewers' Secure cookies work);
    Caddy tells the app with X-Forwarded-Proto.

    `services` (an estate: service -> {site: URL of its instance there}) are served under
    /s/<service>/, each to its instances in the undrained sites, this site's own first; a door
    without `apps` answers /healthz itself."""
    routes = _service_routes(site, order, services or {})
    if apps:
        routes += _routes(site, [s for s in order if s in apps] or [site], apps)
    else:
        routes.append({"match": [{"path": ["/healthz"]}],
                       "handle": [{"handler": "static_response", "status_code": 200, "body": "door ok"}]})
    servers = {"door": {"listen": [listen], "automatic_https": {"disable": True}, "routes": routes}}
    config: dict = {
        # On a socket, the file's mode keeps other local users out. On TCP, Caddy checks the Host
        # header of admin requests; a loopback address other than 127.0.0.1 must be named.
        "admin": {"listen": admin} if admin.startswith("unix/") else {"listen": admin, "origins": [admin]},
        "apps": {"http": {"servers": servers}},
        # Caddy logs every admin request at INFO, three lines for each push, one push every
        # REFRESH seconds: most of a door's log, for a configuration that did not change. The
        # agent logs each change of routing itself.
        "logging": {"logs": {"default": {"exclude": ["admin.api"]}}},
    }
    if tls is not None:
        servers["door_tls"] = {"listen": [tls.listen], "automatic_https": {"disable": True},
                               "tls_connection_policies": [{"certificate_selection": {"any_tag": ["door"]}}],
                               "routes": routes}
        config["apps"]["tls"] = {"certificates": {"load_files": [
            {"certificate": tls.cert, "key": tls.key, "tags": ["door"]}]}}
    return config


def _service_routes(site: str, order: list[str], services: dict[str, dict[str, str]]) -> list[dict]:
    out = []
    for name, instances in services.items():
        best = [s for s in order if s in instances] or ([site] if site in instances else sorted(instances))
        out.append({"match": [{"path": [f"/s/{name}/*"]}], "terminal": True,
                    "handle": [{"handler": "rewrite", "strip_path_prefix": f"/s/{name}"},
                               *_routes(site, best, instances)[0]["handle"]]})
    return out


def _routes(site: str, upstreams: list[str], apps: dict[str, str]) -> list[dict]:
    return [{"handle": [{
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dial_of(apps[s])} for s in upstreams],
        "load_balancing": {"selection_policy": {"policy": "first"}, "try_duration": TRY_DURATION,
                           "try_interval": "100ms"},
        "health_checks": {
            "active": {"uri": "/healthz", "interval": "500ms", "timeout": "400ms"},
            "passive": {"fail_duration": "3s", "max_fails": 1},
        },
        "transport": {"protocol": "http", "dial_timeout": "500ms",
                      "keep_alive": {"max_idle_conns_per_host": UPSTREAM_IDLE_CONNS,
                                     "idle_timeout": UPSTREAM_IDLE_TIMEOUT}},
        "headers": {"response": {"set": {"X-Firebreak-Door": [site]}}},
    }]}]


class DoorKeeper:
    """Pushes a door configuration to Caddy when it changes, and again now and then, so a door
    that restarted (a site coming back) gets the current routing without waiting for a change."""

    REFRESH = 10.0

    def __init__(self, admin: str, http: httpx.AsyncClient):
        self.http, self.admin_url = admin_client(admin, http)
        self.pushed: str | None = None
        self.pushed_at = 0.0
        self.order: list[str] = []
        self.last_error = ""

    async def push(self, config: dict, order: list[str], now: float) -> bool:
        body = json.dumps(config, sort_keys=True)
        if body == self.pushed and now - self.pushed_at < self.REFRESH:
            return False
        try:
            r = await self.http.post(self.admin_url + "/load", content=body, timeout=2.0,
                                     headers={"Content-Type": "application/json"})
        except httpx.HTTPError as e:
            self._failed(f"door not reachable at {self.admin_url}: {e!r}")
            return False
        if r.status_code != 200:
            self._failed(f"door refused its configuration: HTTP {r.status_code} {r.text.strip()[:300]}")
            return False
        self.last_error = ""
        if body != self.pushed:
            log.info("door now sends to: %s", ", ".join(order) or "this site's app only")
        self.pushed, self.pushed_at, self.order = body, now, list(order)
        return True

    def _failed(self, message: str) -> None:
        # Retried every probe interval: say it once, not five times a second.
        if message != self.last_error:
            log.error("%s (retrying)", message)
        self.last_error, self.pushed = message, None

