"""Housekeeping after an action's reply (actions.after_reply): one of each kind at a time, and a
failure of any kind logged, never left as an unretrieved task exception."""

import asyncio
import logging

from firebreak.control.actions import after_reply


def test_one_of_each_kind_at_a_time_and_failures_are_logged(caplog):
    runs = []

    async def go():
        gate = asyncio.Event()

        async def prune():
            runs.append("prune")
            await gate.wait()

        async def broken():
            raise RuntimeError("Cannot send a request, as the client has been closed")
        for _ in range(5):           # a stream of actions while one prune waits on etcd
            after_reply(prune, "pruning the audit log")
        after_reply(broken, "pruning old releases")
        await asyncio.sleep(0.05)
        assert runs == ["prune"]
        gate.set()
        await asyncio.sleep(0.05)
        after_reply(prune, "pruning the audit log")   # done: the next action's prune runs
        await asyncio.sleep(0.05)
    with caplog.at_level(logging.WARNING):
        asyncio.run(go())
    assert runs == ["prune", "prune"]
    assert any("pruning old releases failed" in r.getMessage() and "client has been closed" in r.getMessage()
               for r in caplog.records)
