"""uvicorn's HTTP protocol with a response's head and body sent in one write.

uvicorn writes the status line and headers when the app starts its response, and the body when
the app sends it: two `send` system calls, and two segments on the wire, for every report. Under
intake that was 17% of an app's profile (py-spy, docs/BENCHMARKS.md "Where a report's CPU
goes"). The app sends both in one step of the event loop, so the writes of one step are joined and
handed to the socket once, at the end of that step. Nothing else changes: flow control, closing
and aborting are the socket's transport's own (a close sends what is pending first)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


# Past this much pending, a write goes out at once: a large body gains nothing from waiting, and
# the socket's own transport must see it to apply flow control (pause_writing).
FLUSH_AT = 64 * 1024

log = logging.getLogger("firebreak.claims")


class OneWriteTransport:
    """A transport whose writes within one step of the event loop reach the socket as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        # A transport already closing still sends what it is given while it has a socket (its
        # own close waits for its buffer): only a lost connection has nowhere to send it.
        if self._transport.get_extra_info("socket") is None:
            return
        try:
            self._transport.write(data)
        except Exception:  # noqa: BLE001 - raised in a callback, it would reach no one
            log.exception("a response could not be written; closing its connection")
            self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, is_closing, pause_reading, resume_reading, ...: the transport's own.
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a OneWriteTransport (uvicorn.Config(http=...))."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request: the socket's transport closes itself when
        # this returns, past our transport, so what is pending goes out first.
        self.transport.flush()  # type: ignore[attr-defined]
        return super().eof_received()
