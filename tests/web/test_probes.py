"""The detector's probes against real, paused processes: a stopped process's kernel still
completes the TCP handshake, and the probe must not take that for an answer."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from firebreak.control import probes
from tests.web.conftest import free_port

TIMEOUT = 0.5


def ask(p: probes.Probe) -> bool:
    return asyncio.run(probes.ask(p, TIMEOUT))


def answers_again(p: probes.Probe, what: str) -> None:
    """A positive answer is awaited, not asked once: CI runs these tests at nice 19 beside the
    lab tests, where a server just resumed may take longer than one probe's timeout. (A probe
    that says "no answer" needs no such patience.)"""
    deadline = time.monotonic() + 10
    while not ask(p):
        assert time.monotonic() < deadline, f"{what} did not answer within 10 s"


def handshake(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        return True


@pytest.fixture
def http_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not ask(probes.http_probe(f"http://127.0.0.1:{port}", "app")):
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.1)
        yield proc, port
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_a_paused_http_server_completes_handshakes_but_does_not_answer(http_server):
    proc, port = http_server
    p = probes.http_probe(f"127.0.0.1:{port}", "agent")
    answers_again(p, "http.server")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        assert handshake(port), "the kernel completes the handshake for a stopped process"
        assert not ask(p), "a handshake alone is not an answer"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    answers_again(p, "http.server after SIGCONT")


def test_a_paused_postgresql_does_not_answer_its_probe(pg):
    p = probes.postgres_probe(f"postgres://127.0.0.1:{pg['port']}/postgres")
    answers_again(p, "PostgreSQL")
    os.kill(pg["pid"], signal.SIGSTOP)  # the postmaster: no backend can be forked to answer
    try:
        assert handshake(pg["port"])
        assert not ask(p)
    finally:
        os.kill(pg["pid"], signal.SIGCONT)
    answers_again(p, "PostgreSQL after SIGCONT")


def test_nothing_listening_is_no_answer():
    assert not ask(probes.http_probe(f"127.0.0.1:{free_port()}", "patroni"))
    assert not ask(probes.postgres_probe(f"postgres://127.0.0.1:{free_port()}/x"))


def test_a_host_the_resolver_refuses_is_no_answer_not_an_error():
    """A label over 63 characters makes asyncio raise UnicodeError (a ValueError): the probe
    reports no answer, and not a stall, instead of ending the agent's probe round."""
    host = "a" * 64 + ".example"
    assert asyncio.run(probes.outcome(probes.Probe(host, 5432, probes.SSL_REQUEST, postgres=True), 0.5)) == \
        probes.REFUSED
    assert not ask(probes.http_probe(f"http://{host}:8008", "patroni"))
