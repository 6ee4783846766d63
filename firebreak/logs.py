"""Structured logs: one JSON object per line, with the site in every record."""

from __future__ import annotations

import json
import logging
import time


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
