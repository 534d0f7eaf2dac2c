"""A feed that lost its lease in a failover, on a real Redis and its channel layer (channels_redis):
the quote store refuses its writes, and a hub never mixes its batches into the newer run's stream.

With asynchronous replication a failover can lose the lease's newest renewal: the standby takes
the lease on the promoted replica while the old feed still thinks it holds it. Here that is made
to happen on one Redis (the lease key deleted behind the old feed's back), and the old feed's
batch is sent on the layer anyway, as it would reach hubs through a primary the failover left
behind.
"""

from __future__ import annotations

import asyncio
import secrets

import orjson
import pytest
from channels_redis.core import RedisChannelLayer

from dashboard.services import hub_events
from tests.helpers.waiting import eventually
from ticker.epochs import new_epoch
from ticker.fanout.hub import Hub
from ticker.fanout.types import Catalog
from ticker.layer import bus
from ticker.layer.connection import RedisTarget
from ticker.layer.lease import LeaseLost
from ticker.layer.store import RedisStore, now_ms
from ticker.protocol import MAX_SYMBOLS, QuoteCodec

pytestmark = pytest.mark.integration

CATALOG = Catalog(frozenset({"AAA"}), [{"s": "AAA", "name": "AAA", "paused": False}])


def row(last: float) -> list:
    return ["AAA", last, 10.0, 10.0, max(10.0, last), min(10.0, last), 100, now_ms()]


class Feed:
    """Publishes as the real feed does: the store first (fenced on its lease), then the layer."""

    def __init__(self, target: RedisTarget, prefix: str, layer: RedisChannelLayer) -> None:
        self.store = RedisStore(target, prefix)
        self.lease = self.store.lease()
        self.layer = layer
        self.epoch = ""

    async def start(self) -> None:
        await self.lease.acquire()
        self.epoch = new_epoch(after=(await self.store.load()).epoch)
        await self.store.save(self.epoch, 0, [row(10.0)])

    async def publish(self, seq: int, last: float) -> None:
        await self.store.save(self.epoch, seq, [row(last)])
        await self.send(seq, last)

    async def send(self, seq: int, last: float) -> None:
        await self.layer.group_send(bus.QUOTES_GROUP, bus.batch_message(self.epoch, seq, [row(last)], ts_ms=now_ms()))


async def test_a_feed_that_lost_its_lease_in_a_failover_cannot_write_and_is_never_heard(redis_server):
    target, prefix = RedisTarget(f"redis://127.0.0.1:{redis_server.port}/0"), f"fencing-{secrets.token_hex(3)}"
    layer = RedisChannelLayer(hosts=[target.layer_host(socket_timeout=None)], prefix=prefix)
    old, new = Feed(target, prefix, layer), Feed(target, prefix, layer)
    await old.start()
    hub_store = RedisStore(target, prefix)

    async def load_catalog() -> Catalog:
        return CATALOG

    hub = Hub(QuoteCodec("node-1"), hub_store.load, load_catalog,
              lambda: hub_events(bus.Listener([bus.QUOTES_GROUP], layer)), max_keys=MAX_SYMBOLS)
    frames: list[dict] = []

    async def send(message: dict) -> None:
        frames.append(orjson.loads(message["text"]))

    await hub.start()
    try:
        await asyncio.wait_for(hub.synced.wait(), 5)
        hub.subscribe(hub.connect(send), None)
        await old.publish(1, 11.0)
        await eventually(lambda: any(f["t"] == "q" for f in frames), 5, what="the old run's first batch")

        await old.store.redis.delete(old.store.lease_key)  # the failover lost its newest renewal
        await new.start()  # the standby takes the lease, a new run ordered after the old one
        await new.publish(1, 20.0)
        with pytest.raises(LeaseLost, match="newer feed run"):
            await old.publish(2, 999.0)
        await old.send(2, 999.0)  # its batch reaches the hubs all the same, through the old primary
        await old.store.redis.delete(old.store.lease_key)  # and the new run's lease is lost too:
        with pytest.raises(LeaseLost, match="newer feed run"):  # the old feed may not take it back
            await old.publish(2, 999.0)
        assert not await old.store.redis.exists(old.store.lease_key)
        await new.publish(2, 21.0)
        await eventually(lambda: hub.position == (new.epoch, 2), 5, what="the new run's second batch")
        assert (await hub_store.load()).epoch == new.epoch
    finally:
        await hub.stop()
        await layer.flush()
        for store in (old.store, new.store, hub_store):
            await store.redis.aclose()

    assert hub.stats.fenced == 1 and hub.replica.epoch == new.epoch
    prices = [r[1] for f in frames if f["t"] in ("snap", "q") for r in f["q"]]
    assert 999.0 not in prices and prices[-1] == 21.0
    snaps = [f["epoch"] for f in frames if f["t"] == "snap"]
    assert snaps[-1] == new.epoch and old.epoch not in snaps[snaps.index(new.epoch):]
