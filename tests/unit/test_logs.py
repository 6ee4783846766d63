"""A long-running process's logs (firebreak/logs.py): JSON lines, and no line per library request."""

import json
import logging

import pytest

from firebreak import logs


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "psycopg.pool")})
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_requests_of_chatty_libraries_stay_out_of_the_log_and_their_warnings_do_not(restored_logging, capsys):
    logs.to_stdout("ansan", quieter={"psycopg.pool": logging.ERROR})
    logging.getLogger("httpx").info('HTTP Request: POST https://10.77.0.12:12379/v3/kv/range "HTTP/1.1 200 OK"')
    logging.getLogger("psycopg.pool").warning("error connecting in 'pool-1'")
    logging.getLogger("httpx").warning("a library warning")
    logging.getLogger("firebreak.claims").info("report 42 stored")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["logger"], d["msg"]) for d in lines] == [("httpx", "a library warning"),
                                                       ("firebreak.claims", "report 42 stored")]
    assert {d["site"] for d in lines} == {"ansan"} and lines[1]["level"] == "info"
