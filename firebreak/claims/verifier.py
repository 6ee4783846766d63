"""The verifier: prices and flags new reports in the background, so opening the queue (a GET)
writes nothing. Every site's app runs one; SKIP LOCKED keeps them off each other's rows."""

from __future__ import annotations

import asyncio
import logging
import time

from firebreak.claims.review import VERIFY_BATCH, VERIFY_EVERY, verify_batch
from firebreak.claims.review_store import ReviewStore
from firebreak.claims.sources import OutageSource, PolicySource
from firebreak.claims.store import Store

log = logging.getLogger("firebreak.review")


async def verify_forever(store: Store, reviews: ReviewStore, policy: PolicySource, outages: OutageSource) -> None:
    while True:
        n, size = 0, verify_batch(time.monotonic(), store.last_submit)
        try:
            found, _ = await outages()
            n = await reviews.verify_pending(policy(), found, size)
        except Exception as e:  # noqa: BLE001 - no primary now, say: try again next pass (a loop survives its bugs)
            log.warning("verifying new reports failed (will retry): %s", e)
        await asyncio.sleep(0.05 if n >= VERIFY_BATCH else VERIFY_EVERY)
