"""The feed lease and the fenced quote store, on a real redis-server."""

import asyncio

import pytest
import redis.asyncio as redis

from tests.helpers.figures import figure
from ticker.epochs import new_epoch
from ticker.layer.connection import RedisTarget
from ticker.layer.lease import FeedLease, LeaseLost
from ticker.layer.store import RedisStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_server):
    conn = redis.Redis(port=redis_server.port)
    await conn.flushdb()
    yield conn
    await conn.aclose()


async def test_only_one_holder_at_a_time(client):
    a, b = FeedLease(client, "lease", "a", ttl=0.4), FeedLease(client, "lease", "b", ttl=0.4)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert await a.try_acquire()  # renewing what we hold


async def test_a_standby_takes_over_when_the_holder_stops_renewing(client):
    a, b = FeedLease(client, "lease", "a", ttl=0.4), FeedLease(client, "lease", "b", ttl=0.4)
    await a.acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(b.acquire(), 2)
    took = loop.time() - started
    assert took > 0.2, "the standby took the lease before it expired"
    figure("lease: a standby takes over a 0.4 s lease", took, target=0.6, limit=2.0)


async def test_keep_raises_when_the_lease_is_taken(client):
    a, b = FeedLease(client, "lease", "a", ttl=0.4), FeedLease(client, "lease", "b", ttl=0.4)
    await a.acquire()
    await client.set("lease", "b", px=400)  # taken over behind a's back
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(a.keep(), 2)
    assert await client.get("lease") == b"b"
    await b.release()
    assert await client.get("lease") is None


async def test_release_leaves_another_holders_lease_alone(client):
    a, b = FeedLease(client, "lease", "a"), FeedLease(client, "lease", "b")
    await a.acquire()
    await b.release()
    assert await client.get("lease") == b"a"


async def test_a_fenced_store_writes_only_while_the_lease_is_held(redis_server, client):
    store = RedisStore(RedisTarget(f"redis://127.0.0.1:{redis_server.port}/0"))
    lease = store.lease()
    await client.set(store.lease_key, "someone-else")
    with pytest.raises(LeaseLost):
        await store.save("e1", 0, [["AAA", 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0]])
    await client.delete(store.lease_key)
    await lease.acquire()
    await store.save("e1", 0, [["AAA", 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0]])
    assert (await store.load()).rows["AAA"][1] == 1.0
    await client.set(store.lease_key, "someone-else")
    with pytest.raises(LeaseLost):
        await store.save("e1", 1, [["AAA", 2.0, 1.0, 1.0, 2.0, 1.0, 0, 0]])
    assert (await store.load()).seq == 0
    await store.redis.aclose()


async def test_renewing_the_lease_never_fails_the_holders_writes(redis_server, client):
    store = RedisStore(RedisTarget(f"redis://127.0.0.1:{redis_server.port}/0"))
    lease = FeedLease(store.redis, store.lease_key, ttl=0.2)  # renewed every 50 ms
    store.fence = lease
    await lease.acquire()
    keeper = asyncio.create_task(lease.keep())
    try:
        for seq in range(200):  # about a second of back-to-back writes across ~20 renewals
            await store.save("e1", seq, [["AAA", float(seq), 1.0, 1.0, 1.0, 1.0, 0, 0]])
            await asyncio.sleep(0.005)
    finally:
        keeper.cancel()
    assert (await store.load()).seq == 199
    await store.redis.aclose()


async def test_a_lease_that_redis_lost_is_taken_back_by_the_next_write(redis_server, client):
    """Redis restarted without persistence: the active feed goes on in its epoch, no new run."""
    store = RedisStore(RedisTarget(f"redis://127.0.0.1:{redis_server.port}/0"))
    lease = store.lease()
    await lease.acquire()
    await client.delete(store.lease_key)  # what a restart of Redis does to it
    await store.save("e1", 7, [["AAA", 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0]])
    assert (await client.get(store.lease_key)).decode() == lease.owner
    assert 0 < await client.pttl(store.lease_key) <= lease.ttl_ms
    await store.redis.aclose()


async def test_a_run_older_than_the_stored_one_may_not_write_even_where_the_lease_is_free(redis_server, client):
    """A failover lost the old feed's newest renewal and the standby took the lease with a newer run;
    then that lease is lost too (a second failover): the old feed finds no lease but may not take
    it back: the store holds a newer run."""
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    mine, theirs = RedisStore(RedisTarget(url)), RedisStore(RedisTarget(url))
    await mine.lease().acquire()
    old = new_epoch()
    await mine.save(old, 0, [["AAA", 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0]])
    await client.delete(mine.lease_key)
    await theirs.lease().acquire()
    new = new_epoch(after=(await theirs.load()).epoch)
    await theirs.save(new, 0, [["AAA", 2.0, 1.0, 1.0, 2.0, 1.0, 0, 0]])
    await client.delete(mine.lease_key)
    with pytest.raises(LeaseLost, match="newer feed run"):
        await mine.save(old, 1, [["AAA", 9.0, 1.0, 1.0, 9.0, 1.0, 0, 0]])
    assert await client.get(mine.lease_key) is None  # not taken back
    snap = await mine.load()
    assert (snap.epoch, snap.rows["AAA"][1]) == (new, 2.0)
    await theirs.save(new, 1, [["AAA", 3.0, 1.0, 1.0, 3.0, 1.0, 0, 0]])  # the newer run takes it back
    assert (await client.get(mine.lease_key)).decode() == theirs.fence.owner
    for store in (mine, theirs):
        await store.redis.aclose()
