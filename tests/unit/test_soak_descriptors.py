"""The soak tells what a process's open files are (bench/soak.py descriptors), read from /proc."""

import os
import socket

from bench.soak import descriptor_groups, descriptors


def test_descriptors_name_pipes_listeners_and_connections_by_their_lab_port():
    before = descriptors(os.getpid())
    r, w = os.pipe()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        after = descriptors(os.getpid())
        assert after.get("pipe", 0) - before.get("pipe", 0) == 2
        assert after.get("tcp listening", 0) - before.get("tcp listening", 0) == 1
        # neither end is a lab port: both ends of the connection are "other"
        assert after.get("tcp other", 0) - before.get("tcp other", 0) == 2
        client.close()  # the peer hangs up; the accepted socket, not yet closed, waits in close-wait
        wait = [k for k in descriptors(os.getpid()) if k.startswith("tcp other (close-wait")]
        assert wait, descriptors(os.getpid())
    finally:
        for s in (accepted, server, client):
            s.close()
        os.close(r)
        os.close(w)


def test_descriptor_groups():
    kinds = {"file": 4, "pipe": 4, "tcp listening": 1, "tcp from clients of app": 10, "tcp to postgres": 6,
             "tcp to app (close-wait: the peer hung up, the socket not closed)": 3}
    assert descriptor_groups(kinds) == {"clients": 10, "outbound": 6, "other": 12}
