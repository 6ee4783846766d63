"""A deploy's push to one site's app (actions.roll), against real sockets: an app that answers,
one that answers with an error, one whose connection is reset (a site back from a power cut,
its app not listening yet, resets the connection the console kept open to the app that died
there), and one that refuses. Only an answer with an error is a failed deploy; a site that
could not be reached gets the release from the store through its own agent."""

import asyncio
import socket
import struct

import httpx

from firebreak.control.actions import roll

RECORD = {"version": "v7", "artifact": "claims-v7.whl"}


async def serve(handler) -> tuple[asyncio.base_events.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def answer(status: bytes, reader, writer) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    writer.close()


async def reset(reader, writer) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with RST
    writer.transport.abort()


def test_only_an_answer_with_an_error_fails_a_deploy():
    async def main():
        ok, ok_url = await serve(lambda r, w: answer(b"200 OK", r, w))
        err, err_url = await serve(lambda r, w: answer(b"500 Internal Server Error", r, w))
        rst, rst_url = await serve(reset)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}"   # bound, never listening
        async with httpx.AsyncClient() as http:
            out = {name: await roll(http, url, "token", RECORD, dead=False)
                   for name, url in (("ok", ok_url), ("error", err_url), ("reset", rst_url), ("refused", refused_url))}
            out["dead"] = await roll(http, refused_url, "token", RECORD, dead=True)
        for s in (ok, err, rst):
            s.close()
        closed.close()
        return out
    out = asyncio.run(main())
    assert out["ok"] == "ok"
    assert out["error"].startswith("failed: HTTPStatusError"), out["error"]
    assert out["reset"].startswith("skipped: unreachable ("), out["reset"]
    assert out["refused"] == "skipped: unreachable (ConnectError)"
    assert out["dead"] == "skipped: site is dead"
