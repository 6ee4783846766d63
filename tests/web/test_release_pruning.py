"""Pruning the release store against a real (open, one-member) etcd: the newest RELEASES_KEEP
and the current one are kept, and nothing is dropped once the current release changed after
the prune read it (an operator rolling back meanwhile)."""

import asyncio
import json

from firebreak.control.actions import prune_releases
from firebreak.control.etcd import Etcd
from firebreak.control.keys import RELEASES_KEEP, Keys
from tests.web.conftest import plain_etcd


def release(version: str) -> str:
    return json.dumps({"version": version, "artifact": f"claims-{version}.whl"})


def test_prune_keeps_the_newest_and_the_current_and_stops_when_the_current_one_changes():
    keys = Keys()
    versions = [f"v{i}" for i in range(RELEASES_KEEP + 3)]   # v0 oldest

    class RollbackMeanwhile(Etcd):
        """Another operator deploys v1 right after this prune has read the current release."""
        rollback = False

        async def get(self, key):
            kv = await super().get(key)
            if key == keys.release_current and self.rollback:
                self.rollback = False
                await self.put(keys.release_current, release("v1"))
            return kv

    async def go(url):
        etcd = RollbackMeanwhile([url], timeout=3)
        try:
            for v in versions:
                await etcd.put(keys.release(v), release(v))
            await etcd.put(keys.release_current, release("v0"))
            etcd.rollback = True
            await prune_releases(etcd, keys)
            raced = sorted(kv.key.rsplit("/", 1)[1] for kv in await etcd.get_prefix(keys.releases, keys_only=True))
            await prune_releases(etcd, keys)   # the next prune, current now v1
            after = sorted(kv.key.rsplit("/", 1)[1] for kv in await etcd.get_prefix(keys.releases, keys_only=True))
            return raced, after
        finally:
            await etcd.close()
    with plain_etcd("prune") as url:
        raced, after = asyncio.run(go(url))
    assert raced == sorted(versions)                        # v1 (and v0, v2) not pruned under the rollback
    assert after == sorted(["v1", *versions[3:]])           # v0 and v2 go; v1, current now, stays


def test_a_version_stored_again_is_new_and_one_stored_again_under_the_prune_is_kept():
    """A release stored again (a drill's operator reuses its versions' names; an operator fixes a
    release's notes) is as new as any: ordered by its first revision, the next prune dropped it
    under the deploy that followed (404)."""
    keys = Keys()
    versions = [f"v{i}" for i in range(RELEASES_KEEP + 2)]   # v0 oldest

    class StoreAgainMeanwhile(Etcd):
        """An operator stores v1 again right after this prune has read the release store."""
        again = False

        async def get_prefix(self, prefix, **kw):
            kvs = await super().get_prefix(prefix, **kw)
            if prefix == keys.releases and self.again:
                self.again = False
                await self.put(keys.release("v1"), release("v1"))
            return kvs

    async def go(url):
        etcd = StoreAgainMeanwhile([url], timeout=3)
        try:
            for v in versions:
                await etcd.put(keys.release(v), release(v))
            await etcd.put(keys.release(versions[0]), release(versions[0]))   # v0 stored again: newest
            etcd.again = True
            await prune_releases(etcd, keys)
            return sorted(kv.key.rsplit("/", 1)[1] for kv in await etcd.get_prefix(keys.releases, keys_only=True))
        finally:
            await etcd.close()
    with plain_etcd("prune-again") as url:
        left = asyncio.run(go(url))
    # v2 and v1 were the oldest by last store once v0 was stored again: v2 goes; v1, stored again
    # under the prune, stays
    assert left == sorted(v for v in versions if v != "v2")
