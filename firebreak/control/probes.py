"""What the detector asks a site's components, and what counts as an answer.

A completed TCP handshake is not an answer: the kernel completes it for a process that is
stopped (a VM stall, a storage hang, SIGSTOP: Jepsen's pause), and a site whose processes do not
answer is as dead to its clients as one without power. Measured before this: every process of the
primary's site stopped for 8 s, no verdict, writes back only when the pause ended (8.01 s).

So each probe is the smallest exchange the component's own process must take part in:
* an HTTP endpoint gets `GET <path> HTTP/1.0` and must send a status line (any status: the
  process runs; whether it is healthy is for other checks). A plain request to a TLS port of a Go
  server (etcd's client port) gets its "400 Bad Request" line, which counts too;
* an `https://` endpoint must complete a TLS handshake, which its process does, not the kernel;
* PostgreSQL gets an SSLRequest and must answer one byte, `S` or `N` (its postmaster forks a
  backend for it, which answers before any authentication and exits when we close; with no
  startup packet after the answer PostgreSQL logs nothing).

Each exchange is a few dozen bytes on a fresh connection: no client library, no pool, and
nothing for the probed process to keep.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

# PostgreSQL's SSLRequest: length 8, code 80877103 (protocol 1234.5679).
SSL_REQUEST = struct.pack("!ii", 8, 80877103)

# A path each kind of component answers cheaply: Patroni's liveness does not query PostgreSQL;
# the apps' and consoles' health routes return a constant; on etcd's metrics listener a path it
# does not serve is a 404 from Go's router, with no raft read behind it (its /health does one).
PATHS = {"patroni": "/liveness", "app": "/healthz", "agent": "/healthz", "etcd": "/firebreak-probe"}


@dataclass(frozen=True)
class Probe:
    host: str
    port: int
    send: bytes          # what to write once connected (empty: the TLS handshake is the exchange)
    tls: bool = False
    postgres: bool = False

    def answered(self, first: bytes) -> bool:
        """Whether the first bytes read back are the component's own answer."""
        if self.postgres:
            return first[:1] in (b"S", b"N")
        return first.startswith(b"HTTP/")


def http_probe(url: str, component: str) -> Probe:
    """The probe of an HTTP(S) endpoint given as a URL (`host:port` alone is taken as http)."""
    parts = urlsplit(url if "//" in url else "http://" + url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{component}: {url!r} needs a host and a port")
    tls = parts.scheme == "https"
    path = PATHS.get(component, "/")
    request = f"GET {path} HTTP/1.0\r\nHost: {parts.hostname}\r\nUser-Agent: firebreak-probe\r\n\r\n".encode()
    return Probe(parts.hostname, parts.port, b"" if tls else request, tls=tls)


def postgres_probe(conn_url: str) -> Probe | None:
    """The probe of a member's PostgreSQL from its Patroni member key's conn_url, or None when
    the key names no host and port (a Unix socket, say)."""
    try:
        parts = urlsplit(conn_url)
        host, port = parts.hostname, parts.port or 5432
    except ValueError:
        return None
    if not host or host.startswith("/"):
        return None
    return Probe(host, port, SSL_REQUEST, postgres=True)


def _insecure_tls() -> ssl.SSLContext:
    # The handshake only shows that the process answers; who it is matters to other clients.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_TLS = _insecure_tls()


ANSWERED, REFUSED, SILENT = "answered", "refused", "silent"


async def outcome(probe: Probe, timeout: float) -> str:
    """One probe: ANSWERED; REFUSED when nothing listens or the peer hung up without an answer
    (a process that is not running, or is restarting, says so at once); SILENT when nothing came
    back within `timeout` seconds (no power, a cut link, or a process that is stopped)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(probe.host, probe.port,
                                                           ssl=_TLS if probe.tls else None)
            if probe.tls:
                return ANSWERED
            writer.write(probe.send)
            await writer.drain()
            first = await reader.read(16)
            return ANSWERED if probe.answered(first) else REFUSED
    except (ConnectionRefusedError, ConnectionResetError, ssl.SSLError):
        return REFUSED
    except (OSError, asyncio.TimeoutError):
        return SILENT
    except ValueError:
        # A host the resolver refuses outright (a label over 63 characters: UnicodeError): no
        # answer, and no evidence of a stall either.
        return REFUSED
    finally:
        if writer is not None:
            writer.close()


async def ask(probe: Probe, timeout: float) -> bool:
    """One probe: True when the component answered within `timeout` seconds."""
    return await outcome(probe, timeout) == ANSWERED
