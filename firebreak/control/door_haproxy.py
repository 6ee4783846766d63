"""A site's front door on HAProxy: the routes of Caddy's door (control/door.py), for a fraction
of its CPU.

Measured on one lab (2026-12-05, three doors, 64 intake connections each from eight addresses):
Caddy took 0.35-0.38 cores for about 2,000 reports a second, HAProxy beside it 0.09-0.14 cores for
2,600-4,000, and the same apps and database then took 32-87% more reports a second
(docs/BENCHMARKS.md, "Claims intake").

The configuration is written once, at start: this site's app is the active server, every other
site's a backup in the sites' order, so HAProxy sends to this site's app while it is healthy and
else to the first healthy backup, as Caddy's "first" policy does with the routing order. Drains
(the only change of routing order, ops.routing) are applied through the runtime API (`set server
... state maint|ready`), never by a reload: a reload closes idle keep-alive connections, and a
client sending on one at that moment loses its request. Dead sites are HAProxy's health checks'
business, as they are Caddy's.

`haproxy_config` and `commands` are pure; `HaproxyDoorKeeper` is the thin shell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from firebreak.control import haproxy_api
from firebreak.control.door import dial_of
from firebreak.keepalive import DOOR_IDLE_S

log = logging.getLogger("firebreak.door")

APPS = "apps"   # the backend of the reference app


def service_backend(name: str) -> str:
    return f"svc_{name}"


@dataclass(frozen=True)
class Backend:
    """One backend: its servers (site -> host:port), this site's first when it has one; `service`:
    the estate service it serves under /s/<service>/ (None: the reference app)."""
    name: str
    servers: tuple[tuple[str, str], ...]
    service: str | None = None


def backends(site: str, sites: list[str], apps: dict[str, str],
             services: dict[str, dict[str, str]] | None = None) -> list[Backend]:
    """The door's backends: each service's (an estate), else the reference app's, with servers in
    the sites' order, this site's own first."""
    def ordered(instances: dict[str, str]) -> tuple[tuple[str, str], ...]:
        order = ([site] if site in instances else []) + [s for s in sites if s != site and s in instances]
        return tuple((s, dial_of(instances[s])) for s in order)
    if services:
        return [Backend(service_backend(n), ordered(inst), n) for n, inst in services.items()]
    return [Backend(APPS, ordered(apps))]


def haproxy_config(*, site: str, sites: list[str], apps: dict[str, str], listen: str, admin_socket: str,
                   tls_pem: str | None = None, tls_listen: str | None = None,
                   services: dict[str, dict[str, str]] | None = None, socket_mode: str = "600",
                   threads: int | None = None) -> str:
    """HAProxy's configuration for `site`'s front door. `tls_pem`: the certificate, its key in the
    same file or at its name plus `.key` (HAProxy's ssl-load-extra-files), served on `tls_listen`.
    `threads` None: HAProxy's default (one per CPU); the lab passes 1, as it gives Caddy one."""
    lines = [f"# front door of {site}: written by Firebreak; the agent steers it through the runtime API",
             "global",
             "    maxconn 4096",  # as the database door: 2 x 4096 descriptors fit every limit the lab has met
             f"    stats socket {admin_socket} mode {socket_mode} level admin"]
    if threads:
        lines.append(f"    nbthread {threads}")
    lines += [
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        # A request that could not be connected goes to the next server (`redispatch`), for 2 s of
        # tries as Caddy's try_duration; one the app accepted is never sent again (retry-on's
        # default is conn-failure only): writes carry an idempotency key and their client decides.
        "    retries 3",
        "    option redispatch 1",
        "    timeout connect 500ms",
        "    timeout client 30s",
        "    timeout server 120s",
        # a client gets 10 s to send its request's head (a slow sender holds no app connection)
        "    timeout http-request 10s",
        # The door lets an idle client connection go, and keeps idle connections to the apps
        # shorter than the apps would (firebreak/keepalive.py; HAProxy purges idle server
        # connections beyond the last period's need every pool-purge-delay).
        f"    timeout http-keep-alive {DOOR_IDLE_S}s",
        "frontend door",
        f"    bind {listen}",
    ]
    if tls_pem and tls_listen:
        lines.append(f"    bind {tls_listen} ssl crt {tls_pem}")
    lines += [
        # The client's own X-Forwarded-For is never believed: the app reads the last address of
        # the one header, which is the door's view of the client.
        "    http-request del-header X-Forwarded-For",
        "    option forwardfor",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        f"    http-response set-header X-Firebreak-Door {site}",
    ]
    bks = backends(site, sites, apps, services)
    if services:
        # a door without the reference app answers its own health check
        lines.append('    http-request return status 200 content-type text/plain string "door ok" '
                     "if { path /healthz }")
        for name in services:
            lines.append(f"    use_backend {service_backend(name)} if {{ path_beg /s/{name}/ }}")
    else:
        lines.append(f"    default_backend {APPS}")
    for b in bks:
        lines += [f"backend {b.name}",
                  "    option httpchk GET /healthz",
                  # A connection to an app serves one client connection and closes with it: the
                  # door's keep-alive (25 s) then ends before the app's (30 s), so the app never
                  # closes one a request is being sent on (HAProxy 2.6 keeps idle connections it
                  # shares between clients for ever, until the app closes them).
                  "    http-reuse never",
                  # A failed connection marks the server down at once, as Caddy's passive check;
                  # the active check (every 0.5 s, 0.4 s to answer) brings it back.
                  "    default-server check inter 500ms fall 1 rise 1 observe layer4 error-limit 1 on-error mark-down",
                  "    timeout check 400ms"]
        if b.service is not None:
            lines.append(f"    http-request replace-path ^/s/{b.service}(/.*)$ \\1")
        lines += [f"    server {s} {addr}" + ("" if s == site else " backup") for s, addr in b.servers]
    return "\n".join(lines) + "\n"


def commands(bks: list[Backend], site: str, order: list[str]) -> list[str]:
    """Runtime API commands that put every backend on `order` (the sites that get traffic, this
    one's first), whatever state the door is in: idempotent, so the same list serves a change and
    a refresh. An empty order still serves this site's own instance, as Caddy's door does: a door
    that answers 502 tells a client more than one that is gone; a service with no instance in a
    serving site, every instance."""
    want = set(order) or {site}
    out = []
    for b in bks:
        names = {s for s, _ in b.servers}
        # as Caddy's door: this site's instance, else every instance, when no serving site has one
        serving = (names & want) or ({site} & names) or names
        out += [f"set server {b.name}/{s} state {'ready' if s in serving else 'maint'}" for s, _ in b.servers]
    return out


class HaproxyDoorKeeper:
    """Applies the routing order to the door, and again every REFRESH seconds, so a door that
    restarted (a site coming back) gets the current routing without waiting for a change."""

    REFRESH = 10.0

    def __init__(self, socket_path: str, site: str, bks: list[Backend]):
        self.socket_path, self.site, self.bks = socket_path, site, bks
        self.order: list[str] = []
        self.applied: list[str] | None = None
        self.applied_at = 0.0
        self.last_error = ""

    async def push(self, order: list[str], now: float) -> bool:
        if order == self.applied and now - self.applied_at < self.REFRESH:
            return False
        error = await haproxy_api.send_all(self.socket_path, commands(self.bks, self.site, order), "door")
        if error:
            self._failed(error)
            return False
        self.last_error = ""
        if order != self.applied:
            log.info("door now sends to: %s", ", ".join(order) or "this site's app only")
        self.applied, self.applied_at, self.order = list(order), now, list(order)
        return True

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.error("%s (retrying)", message)
        self.last_error, self.applied = message, None
