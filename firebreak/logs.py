"""Structured logs: one JSON object per line, with the site in every record."""

from __future__ import annotations

import json
import logging
import sys
import time

# Libraries that log every request they make at INFO. The agent and the app talk to etcd several
# times a second: at INFO the app's log grew by a line per etcd read (290 kB an hour in the soak,
# nine lines in ten of it), which buries what an operator looks for. Their warnings still show.
CHATTY = {"httpx": logging.WARNING, "httpcore": logging.WARNING}


class JsonLines(logging.Formatter):
    def __init__(self, site: str):
        super().__init__()
        self.site = site

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": round(time.time(), 3), "site": self.site, "level": record.levelname.lower(),
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)  # a bug's traceback belongs in the log
        return json.dumps(doc, ensure_ascii=False)


def to_stdout(site: str, quieter: dict[str, int] | None = None) -> None:
    """A long-running process's logging: JSON lines on stdout (the lab's log files, or journald
    under systemd, which rotates them), INFO and up, the chatty libraries and `quieter` at their
    own levels."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines(site))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for name, level in {**CHATTY, **(quieter or {})}.items():
        logging.getLogger(name).setLevel(level)
