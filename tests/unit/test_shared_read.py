"""SharedRead: a flood of reads costs one read per `fresh` seconds; failures and an operator's
change are never served from it."""

import asyncio

import pytest

from firebreak.control.shared_read import SharedRead


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_concurrent_and_recent_requests_share_one_read_and_a_later_one_reads_again():
    async def go():
        clock, reads = Clock(), []
        shared = SharedRead(0.25, clock)
        gate = asyncio.Event()

        async def read():
            reads.append(clock.now)
            await gate.wait()
            return len(reads)
        waiting = [asyncio.ensure_future(shared.get(read)) for _ in range(100)]
        await asyncio.sleep(0)
        gate.set()
        first = await asyncio.gather(*waiting)
        clock.now = 0.2
        recent = await shared.get(read)
        clock.now = 0.3
        later = await shared.get(read)
        return first, recent, later, reads
    first, recent, later, reads = asyncio.run(go())
    assert set(first) == {1} and recent == 1 and later == 2 and reads == [0.0, 0.3]


def test_a_failed_read_is_not_served_again_and_forget_reads_anew():
    async def go():
        shared, calls = SharedRead(10.0, Clock()), []

        async def failing():
            calls.append("fail")
            raise RuntimeError("etcd away")

        async def ok():
            calls.append("ok")
            return "fresh"
        with pytest.raises(RuntimeError):
            await shared.get(failing)
        assert await shared.get(ok) == "fresh"
        assert await shared.get(failing) == "fresh"  # within `fresh`: shared
        shared.forget()
        assert await shared.get(ok) == "fresh"
        return calls
    assert asyncio.run(go()) == ["fail", "ok", "ok"]


def test_a_caller_that_gives_up_does_not_cancel_the_read_others_wait_for():
    async def go():
        shared, gate = SharedRead(1.0, Clock()), asyncio.Event()

        async def read():
            await gate.wait()
            return "answer"
        quitter = asyncio.ensure_future(shared.get(read))
        stayer = asyncio.ensure_future(shared.get(read))
        await asyncio.sleep(0)
        quitter.cancel()
        await asyncio.sleep(0)
        gate.set()
        return await stayer, quitter.cancelled()
    assert asyncio.run(go()) == ("answer", True)


def test_a_read_left_running_in_another_event_loop_is_never_joined():
    shared = SharedRead(10.0, Clock())

    async def never():
        await asyncio.Event().wait()

    async def ok():
        return "mine"
    old = asyncio.new_event_loop()
    old.run_until_complete(asyncio.wait([old.create_task(shared.get(never))], timeout=0.01))
    old.close()  # its read still pending, as a loop closed without cancelling its tasks leaves it
    assert asyncio.run(shared.get(ok)) == "mine"
