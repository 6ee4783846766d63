"""The apps' HTTP protocol (claims/one_write.py) under a real uvicorn and a real client: every
response is what uvicorn alone sends (keep-alive, a body larger than the socket takes at once,
streaming, a connection the app closes), and a small response reaches the socket in one write."""

import asyncio
import threading

import httpx
import pytest
import uvicorn

from firebreak.claims import one_write
from tests.web.conftest import free_port

BIG = b"x" * (4 * 1024 * 1024)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"end"})
        return
    body = BIG if path == "/big" else b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def served(monkeypatch):
    writes: list[int] = []
    real = one_write.OneWriteTransport.flush

    def counted(self):
        if self._pending:
            writes.append(len(self._pending))
        real(self)
    monkeypatch.setattr(one_write.OneWriteTransport, "flush", counted)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=one_write.OneWriteProtocol,
                                           log_level="warning", loop="asyncio", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):  # 30 s: a deadline for a loaded machine, not a timing
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}", writes
    finally:
        server.should_exit = True
        thread.join(10)


def test_responses_are_whole_and_a_small_one_is_one_write(served):
    url, writes = served
    with httpx.Client(timeout=10) as c:
        for _ in range(3):  # one keep-alive connection
            r = c.get(url + "/small")
            assert r.status_code == 201 and r.json() == {"ok": True}
        assert writes == [2, 2, 2], writes  # head and body, joined: one write each
        assert c.get(url + "/big").content == BIG
        assert c.get(url + "/stream").content == b"part0;part1;part2;part3;part4;end"
        r = c.get(url + "/close")
        assert r.status_code == 201 and r.headers["connection"] == "close" and r.json() == {"ok": True}
        assert c.get(url + "/small").json() == {"ok": True}  # a new connection after the close


def test_a_client_that_half_closes_after_its_request_still_gets_its_response(served):
    """HTTP/1.0-style tools and probes send the request and shut their sending side: uvicorn
    alone answers them, so must the joined writes."""
    import socket
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    got = 0
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            got += data.startswith(b"HTTP/1.1 201") and data.endswith(b'{"ok":true}')
    assert got == 50, got
