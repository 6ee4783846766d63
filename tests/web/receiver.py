"""A webhook subscriber for tests: a real HTTP server that checks every delivery with the check
docs/PUBLIC-RECORD.md gives subscribers (the web tests' two notifiers, the lab's three)."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import ROOT


def subscriber_check():
    """The `verified` function from the docs, run as the receiver's check: the docs are what
    subscribers copy, so they are what is tested."""
    doc = (ROOT / "docs" / "PUBLIC-RECORD.md").read_text()
    code = re.search(r"<!-- subscriber-check[^>]*-->\n```python\n(.*?)```", doc, re.S).group(1)
    space: dict = {}
    exec(code, space)  # noqa: S102 - our own documentation
    return space["verified"]


class Receiver:
    """A subscriber on `host` (127.0.0.1, or the lab's host address): records every POST (path,
    event id, attempt, body, verified); paths under /flaky answer 500 to an event's first attempt."""

    def __init__(self, secret: bytes, host: str = "127.0.0.1"):
        self.secret, self.verified, self.got, self.lock = secret, subscriber_check(), [], threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event = self.headers["X-Firebreak-Event"]
                with receiver.lock:
                    first = not any(g["event"] == event and g["path"] == self.path for g in receiver.got)
                    receiver.got.append({"path": self.path, "event": event, "body": json.loads(body),
                                         "attempt": int(self.headers["X-Firebreak-Attempt"]),
                                         "ok": receiver.verified(receiver.secret, self.headers, body)})
                self.send_response(500 if self.path.startswith("/flaky") and first else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [g for g in self.got if g["path"] == path]
