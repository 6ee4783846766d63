"""The claims store's deadline on a statement (connection._bounded): no answer in time, or a
caller that gives up, hangs up the connection and stops the work on it."""

import asyncio

import pytest

from firebreak.claims.connection import _bounded
from firebreak.errors import OutcomeUnknown


class Line:
    """What _bounded touches of a psycopg connection: the libpq handle it hangs up."""

    def __init__(self):
        self.hung_up = False
        self.pgconn = self

    def finish(self) -> None:
        self.hung_up = True


async def silent_server(started: asyncio.Event, stopped: list) -> None:
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stopped.append(True)
        raise


def test_an_answer_in_time_is_returned_and_the_line_kept():
    line = Line()

    async def answer():
        return 42
    assert asyncio.run(_bounded(line, answer(), 1.0)) == 42
    assert not line.hung_up


def test_no_answer_by_the_deadline_hangs_up_and_says_the_outcome_is_unknown():
    line, stopped = Line(), []

    async def main():
        with pytest.raises(OutcomeUnknown):
            await _bounded(line, silent_server(asyncio.Event(), stopped), 0.05)
        await asyncio.sleep(0)
    asyncio.run(main())
    assert line.hung_up and stopped == [True]


def test_a_caller_that_gives_up_hangs_up_and_leaves_no_work_running_on_the_line():
    line, stopped = Line(), []

    async def main():
        started = asyncio.Event()
        caller = asyncio.create_task(_bounded(line, silent_server(started, stopped), 3600))
        await started.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0)  # let the work's cancellation run
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    left = asyncio.run(main())
    assert line.hung_up, "the connection would go back to the pool mid-statement"
    assert stopped == [True] and left == []


def test_the_primary_moving_hangs_up_a_statement_under_way_at_once():
    """A batch on a connection to a primary whose site lost power waited out the whole 1.5 s
    deadline after the new primary took writes (bench/detector.py): the agent's word that the
    primary moved (store.hang_up sets the event) hangs it up at once, an unknown outcome."""
    line, stopped = Line(), []

    async def main():
        started, moved = asyncio.Event(), asyncio.Event()
        caller = asyncio.create_task(_bounded(line, silent_server(started, stopped), 3600, abandon=moved))
        await started.wait()
        moved.set()
        with pytest.raises(OutcomeUnknown, match="primary moved"):
            await asyncio.wait_for(caller, 1.0)
        await asyncio.sleep(0)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    left = asyncio.run(main())
    assert line.hung_up and stopped == [True] and left == []


def test_an_answer_in_time_is_kept_when_nothing_moved():
    line = Line()

    async def answer():
        return 7
    assert asyncio.run(_bounded(line, answer(), 1.0, abandon=asyncio.Event())) == 7
    assert not line.hung_up


def test_a_statement_answered_within_the_grace_after_the_word_is_kept():
    """The word that the primary moved can be wrong (an agent that read its site silent for a
    moment): a server that answers within the grace keeps its statement."""
    line = Line()

    async def main():
        moved = asyncio.Event()

        async def answer_soon():
            moved.set()
            await asyncio.sleep(0.05)
            return 9
        return await _bounded(line, answer_soon(), 5.0, abandon=moved)
    assert asyncio.run(main()) == 9
    assert not line.hung_up
