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
from tests.web.conftest import free_port


def test_a_write_under_way_hangs_up_when_the_primary_moves(claims_db):
    settings = Settings.from_env({"FIREBREAK_SITE_NAME": "pangyo", "FIREBREAK_DSN": claims_db,
                                  "FIREBREAK_LOCAL_DSN": claims_db, "FIREBREAK_WRITE_DEADLINE": "30"})

    async def main() -> float:
        store = Store(settings)
        await store.open()
        try:
            # The write cannot finish while another session holds the table: a server that
            # does not answer, as a power cut's is
            with psycopg.connect(claims_db) as holder:
                holder.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
                write = asyncio.create_task(store.submit(ReportIn.model_validate(REPORT), "hang-up-1"))
                # Hung up on once it is under way (waiting on the lock), not while the pool still
                # connects: CI beside the lab tests can take longer than any fixed sleep
                deadline = time.monotonic() + 30
                with psycopg.connect(claims_db, autocommit=True) as watch:
                    while not watch.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                            "AND query ILIKE 'INSERT INTO reports%'").fetchone():
                        assert time.monotonic() < deadline and not write.done(), "the write never waited on the lock"
                        await asyncio.sleep(0.02)
                t0 = time.monotonic()
                store.hang_up()
                with pytest.raises(OutcomeUnknown, match="primary moved"):
                    await asyncio.wait_for(write, 25.0)
                took = time.monotonic() - t0
            # and the next write goes through on a new connection
            stored, _, _ = await store.submit(ReportIn.model_validate(REPORT), "hang-up-2")
            assert stored
            return took
        finally:
            await store.close()
    assert asyncio.run(main()) < 5.0  # at once, not the 30 s deadline


def test_a_replay_is_confirmed_only_once_the_standby_could_have_its_row(pg, claims_db):
    """A retried report (same Idempotency-Key) is answered with the first one's row only after a
    commit that waits for the synchronous standby: with no standby to confirm it, the retry is an
    unknown outcome, not a 201. (A read that only took a transaction ID did not wait: PostgreSQL
    waits only for a transaction that wrote WAL.) Then, with the standby back, it is confirmed."""
    settings = Settings.from_env({"FIREBREAK_SITE_NAME": "pangyo", "FIREBREAK_DSN": claims_db,
                                  "FIREBREAK_LOCAL_DSN": claims_db, "FIREBREAK_WRITE_DEADLINE": "5"})

    def standby(name: str) -> None:
        with psycopg.connect(pg["superuser_dsn"], autocommit=True) as su:
            su.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'" if name
                       else "ALTER SYSTEM RESET synchronous_standby_names")
            su.execute("SELECT pg_reload_conf()")
        # A reload is asynchronous: commits wait once the checkpointer has read it, which a
        # loaded machine (CI beside the lab tests) did only after the retry had been confirmed.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if commit_waits() == bool(name):
                return
            time.sleep(0.05)
        raise AssertionError(f"synchronous_standby_names={name!r} not in effect after 15 s")

    def commit_waits() -> bool:
        """Whether a commit that writes WAL waits for a standby now: seen waiting (SyncRep) in
        pg_stat_activity, then cancelled (which commits it locally with a warning); a commit that
        finished without being seen there did not wait."""
        import threading
        with psycopg.connect(pg["superuser_dsn"], autocommit=True) as probe, \
                psycopg.connect(pg["superuser_dsn"], autocommit=True) as watch:
            done = threading.Event()

            def write() -> None:
                try:
                    probe.execute("SELECT pg_logical_emit_message(true, 'firebreak-test', '')")
                finally:
                    done.set()
            threading.Thread(target=write, daemon=True).start()
            deadline = time.monotonic() + 10
            while not done.is_set():
                waiting = watch.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                        (probe.info.backend_pid,)).fetchone()
                if waiting and waiting[0] == "SyncRep":
                    probe.cancel()
                    done.wait(10)
                    return True
                assert time.monotonic() < deadline, "a commit neither finished nor waited for 10 s"
                time.sleep(0.02)
            return False

    async def main() -> None:
        store = Store(settings)
        await store.open()
        try:
            first, replayed, _ = await store.submit(ReportIn.model_validate(REPORT), "replay-wait-1")
            assert not replayed
            standby("no_such_standby")     # every commit that wrote WAL now waits for ever
            try:
                with pytest.raises(OutcomeUnknown):
                    await store.submit(ReportIn.model_validate(REPORT), "replay-wait-1")
            finally:
                standby("")
            again, replayed, _ = await store.submit(ReportIn.model_validate(REPORT), "replay-wait-1")
            assert replayed and again["receipt"] == first["receipt"]
        finally:
            await store.close()
    asyncio.run(main())


def test_the_anywhere_pool_connects_through_a_dsn_of_several_hosts(claims_db):
    """The read pool of any server that answers races every host of its DSN (RacingConnection);
    its connections are in autocommit, set after connecting (libpq knows no such option)."""
    from urllib.parse import urlsplit
    u = urlsplit(claims_db)
    dead = free_port()
    many = f"host=127.0.0.1,127.0.0.1 port={dead},{u.port} dbname=claims user={u.username} password={u.password}"
    settings = Settings.from_env({"FIREBREAK_SITE_NAME": "pangyo", "FIREBREAK_DSN": claims_db,
                                  "FIREBREAK_LOCAL_DSN": claims_db, "FIREBREAK_ANY_DSN": many})

    async def main() -> None:
        store = Store(settings)
        await store.open()
        try:
            async with store.anywhere.connection(timeout=5) as conn:
                assert conn.autocommit
                cur = await conn.execute("SELECT 1")
                assert (await cur.fetchone())[0] == 1
        finally:
            await store.close()
    asyncio.run(main())
