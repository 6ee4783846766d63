"""The claims store against a real PostgreSQL: a write under way when the site's agent says the
primary moved (POST /admin/primary-moved, store.hang_up) is hung up on at once, an unknown outcome
its client retries with the same key, instead of holding one of intake's writers until the write
deadline. bench/detector.py measured batches sent to a primary whose site had just lost power
held the writers until their 1.5 s deadline, after the new primary already took writes."""

import asyncio
import time

import psycopg
import pytest

from firebreak.claims.models import ReportIn
from firebreak.claims.settings import Settings
from firebreak.claims.store import Store
from firebreak.drill.workload import REPORT
from firebreak.errors import OutcomeUnknown


def test_a_write_under_way_hangs_up_when_the_primary_moves(claims_db):
    settings = Settings.from_env({"FIREBREAK_SITE_NAME": "pangyo", "FIREBREAK_DSN": claims_db,
                                  "FIREBREAK_LOCAL_DSN": claims_db, "FIREBREAK_WRITE_DEADLINE": "5"})

    async def main() -> float:
        store = Store(settings)
        await store.open()
        try:
            # The write cannot finish while another session holds the table: a server that
            # does not answer, as a power cut's is
            with psycopg.connect(claims_db) as holder:
                holder.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
                write = asyncio.create_task(store.submit(ReportIn.model_validate(REPORT), "hang-up-1"))
                await asyncio.sleep(0.5)
                assert not write.done()
                t0 = time.monotonic()
                store.hang_up()
                with pytest.raises(OutcomeUnknown, match="primary moved"):
                    await asyncio.wait_for(write, 4.0)
                took = time.monotonic() - t0
            # and the next write goes through on a new connection
            stored, _, _ = await store.submit(ReportIn.model_validate(REPORT), "hang-up-2")
            assert stored
            return took
        finally:
            await store.close()
    assert asyncio.run(main()) < 1.0  # at once, not the 5 s deadline
