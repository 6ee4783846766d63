"""uvicorn's HTTP protocol with a response's head and body sent in one write.

uvicorn writes the status line and headers when the app starts its response, and the body when
the app sends it: two `send` system calls, and two segments on the wire, for every report. Under
intake that was 17% of an app's profile (py-spy, docs/BENCHMARKS.md "Where a report's CPU
goes"). The app sends both in one step of the event loop, so the writes of one step are joined and
handed to the socket once, at the end of that step. Nothing else changes: flow control, closing
and aborting are the socket's transport's own (a close sends what is pending first)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWriteTransport:
    """A transport whose writes within one step of the event loop reach the socket as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, is_closing, pause_reading, resume_reading, ...: the transport's own.
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a OneWriteTransport (uvicorn.Config(http=...))."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]
