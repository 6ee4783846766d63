"""A deploy's push to one site's app (actions.roll), against real sockets: an app that answers,
one that answers with an error, one that speaks no HTTP, one whose connections are reset (a
site back from a power cut, its app not listening yet, resets the connection the console kept
open to the app that died there), one that resets only the first, and one that refuses. Only
an answer with an error, or no HTTP at all, fails a deploy; a site that could not be reached
gets the release from the store through its own agent."""

import asyncio
import socket
import struct

import httpx

from firebreak.control.actions import roll

RECORD = {"version": "v7", "artifact": "claims-v7.whl"}


async def serve(handler) -> tuple[asyncio.base_events.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_request(reader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)   # all of it: closing with unread bytes would reset


async def answer(status: bytes, reader, writer) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    writer.close()


async def reset(reader, writer) -> None:
    await read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with RST
    writer.transport.abort()


async def garbage(reader, writer) -> None:
    await read_request(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")   # not HTTP: a wrong port in the configuration
    await writer.drain()
    writer.close()


def reset_first():
    """Resets the first connection (the one kept to an app that died), answers the next."""
    count = [0]

    async def handler(reader, writer) -> None:
        count[0] += 1
        await (reset(reader, writer) if count[0] == 1 else answer(b"200 OK", reader, writer))
    return handler


def test_only_an_answer_with_an_error_fails_a_deploy():
    async def main():
        ok, ok_url = await serve(lambda r, w: answer(b"200 OK", r, w))
        err, err_url = await serve(lambda r, w: answer(b"500 Internal Server Error", r, w))
        rst, rst_url = await serve(reset)
        once, once_url = await serve(reset_first())
        junk, junk_url = await serve(garbage)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}"   # bound, never listening
        async with httpx.AsyncClient() as http:
            out = {name: await roll(http, url, "token", RECORD, dead=False)
                   for name, url in (("ok", ok_url), ("error", err_url), ("reset", rst_url), ("refused", refused_url),
                                     ("reset once", once_url), ("not http", junk_url))}
            out["dead"] = await roll(http, refused_url, "token", RECORD, dead=True)
        for s in (ok, err, rst, once, junk):
            s.close()
        closed.close()
        return out
    out = asyncio.run(main())
    assert out["ok"] == "ok"
    assert out["error"] == "failed: HTTP 500"
    assert out["reset"] == "skipped: unreachable (ReadError)"   # reset twice, on two connections
    assert out["reset once"] == "ok"   # the second try, on a new connection, is answered
    assert out["not http"].startswith("failed: "), out["not http"]
    assert out["refused"] == "skipped: unreachable (ConnectError)"
    assert out["dead"] == "skipped: site is dead"
