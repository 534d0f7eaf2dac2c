"""The quote store: the latest full row of every symbol, where any server process can read it.

The feed writes each batch here *before* it publishes the batch on the channel layer, so a
hub that loads the store never sees an older state than the batches still in flight (it
drops those with a seq it already has). Embedded mode keeps the store in process memory;
scaled mode keeps it in Redis (one hash of rows, one hash of feed state, written atomically).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import redis.asyncio as redis
from django.conf import settings

from .lease import FeedLease, LeaseLost
from .protocol import SYM, Row


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Snapshot:
    """The store's content: the feed run (``epoch``), its last batch (``seq``) and every row."""

    epoch: str = ""
    seq: int = 0
    rows: dict[str, Row] = field(default_factory=dict)
    updated_ms: int = 0


class QuoteStore(Protocol):
    async def save(self, epoch: str, seq: int, rows: Iterable[Row], removed: Iterable[str] = ()) -> None:
        """Write the changed rows of batch ``seq``, drop the ``removed`` symbols."""

    async def load(self) -> Snapshot:
        """Read everything, consistently."""

    async def ping(self) -> bool:
        """True when the store answers."""


class MemoryStore:
    """The store of the embedded mode: one per process, shared by the feed and the hub."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    async def save(self, epoch: str, seq: int, rows: Iterable[Row], removed: Iterable[str] = ()) -> None:
        snap = self.snapshot
        if seq == 0:  # a new feed run starts from a clean slate
            snap.rows = {}
        snap.epoch, snap.seq, snap.updated_ms = epoch, seq, now_ms()
        for sym in removed:
            snap.rows.pop(sym, None)
        snap.rows.update((row[SYM], list(row)) for row in rows)

    async def load(self) -> Snapshot:
        snap = self.snapshot
        return Snapshot(snap.epoch, snap.seq, {s: list(r) for s, r in snap.rows.items()}, snap.updated_ms)

    async def ping(self) -> bool:
        return True


class RedisStore:
    """The store of the scaled mode: ``<prefix>:quotes`` (symbol → row) and ``<prefix>:feed``.

    With ``fence`` (the feed's lease), a write happens only while the lease is held: the lease
    key is watched, so a write raced by a takeover fails as well (``LeaseLost``).
    """

    def __init__(self, url: str, prefix: str = "ticker", fence: FeedLease | None = None) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.quotes_key = f"{prefix}:quotes"
        self.feed_key = f"{prefix}:feed"
        self.lease_key = f"{prefix}:feed-lease"
        self.fence = fence

    def lease(self) -> FeedLease:
        """A lease on this store's feed-lease key, for a feed that will write here."""
        return FeedLease(self.redis, self.lease_key)

    async def save(self, epoch: str, seq: int, rows: Iterable[Row], removed: Iterable[str] = ()) -> None:
        mapping = {row[SYM]: orjson.dumps(row) for row in rows}
        removed = list(removed)
        async with self.redis.pipeline(transaction=True) as pipe:
            if self.fence is not None:
                await pipe.watch(self.lease_key)
                holder = await pipe.get(self.lease_key)
                if holder is None or holder.decode() != self.fence.owner:
                    raise LeaseLost(f"not writing batch {seq}: the feed lease is not ours")
                pipe.multi()
            if seq == 0:  # a new feed run starts from a clean slate
                pipe.delete(self.quotes_key)
            if removed:
                pipe.hdel(self.quotes_key, *removed)
            if mapping:
                pipe.hset(self.quotes_key, mapping=mapping)
            pipe.hset(self.feed_key, mapping={"epoch": epoch, "seq": seq, "updated_ms": now_ms()})
            try:
                await pipe.execute()
            except redis.WatchError:
                raise LeaseLost(f"not writing batch {seq}: the feed lease changed hands") from None

    async def load(self) -> Snapshot:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.feed_key)
            pipe.hgetall(self.quotes_key)
            feed, quotes = await pipe.execute()
        if not feed:
            return Snapshot()
        return Snapshot(
            epoch=feed[b"epoch"].decode(),
            seq=int(feed[b"seq"]),
            rows={sym.decode(): orjson.loads(row) for sym, row in quotes.items()},
            updated_ms=int(feed[b"updated_ms"]),
        )

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (redis.RedisError, OSError):
            return False


_memory_store = MemoryStore()


def make_store() -> QuoteStore:
    """The store for this configuration: Redis when the channel layer is Redis, else process memory."""
    if settings.CHANNEL_LAYER_URL:
        return RedisStore(settings.CHANNEL_LAYER_URL, settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"])
    return _memory_store
