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

from ..protocol import SYM, Row
from .connection import RedisTarget
from .lease import FeedLease, Lease, LeaseLost, NoLease


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

    def lease(self) -> Lease:
        """The lease a feed must hold to write here; the store's writes are fenced on it."""


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

    def lease(self) -> Lease:
        """One process, one feed: nothing to wait for."""
        return NoLease()


# One batch, written atomically, and only by the lease holder when a fence is given. A lease
# that is gone (a Redis restarted without persistence) is taken again, as renewing it would:
# nobody else can have taken it meanwhile, and the feed run goes on in the same epoch. Never a
# batch of a run older than the one recorded (``ticker.epochs``: term, then the whole string):
# after a failover that lost the newest renewal, an old feed that finds the lease gone must
# not take it back over a newer run (-1). KEYS: lease, quotes, feed. ARGV: owner ("" for no
# fence), lease ttl in ms, epoch, seq, updated_ms, the number of removed symbols, the removed
# symbols, then symbol/row pairs.
_SAVE = """
local function term(epoch)
  local digits = string.match(epoch, '^[0-9a-f]+')
  return digits and tonumber(digits, 16) or 0
end
local recorded = redis.call('HGET', KEYS[3], 'epoch')
if recorded then
  local mine, theirs = term(ARGV[3]), term(recorded)
  if mine < theirs or (mine == theirs and ARGV[3] < recorded) then
    return -1
  end
end
if ARGV[1] ~= '' then
  local owner = redis.call('GET', KEYS[1])
  if not owner then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  elseif owner ~= ARGV[1] then
    return 0
  end
end
if ARGV[4] == '0' then
  redis.call('DEL', KEYS[2])
end
local removed = tonumber(ARGV[6])
for i = 7, 6 + removed do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
for i = 7 + removed, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[3], 'epoch', ARGV[3], 'seq', ARGV[4], 'updated_ms', ARGV[5])
return 1
"""


class RedisStore:
    """The store of the scaled mode: ``<prefix>:quotes`` (symbol → row) and ``<prefix>:feed``.

    Each batch is one Lua script: atomic, and with ``fence`` (the feed's lease) applied only
    while the lease is ours, checked inside the script, so a takeover cannot slip in between
    the check and the write (``LeaseLost``); never for a feed run older than the one recorded.
    """

    def __init__(self, target: RedisTarget, prefix: str = "ticker") -> None:
        self.redis = target.client(socket_timeout=5, socket_connect_timeout=2)
        self.quotes_key = f"{prefix}:quotes"
        self.feed_key = f"{prefix}:feed"
        self.lease_key = f"{prefix}:feed-lease"
        self.fence: FeedLease | None = None
        self.save_script = self.redis.register_script(_SAVE)

    def lease(self) -> FeedLease:
        """A lease on this store's feed-lease key; from now on every write is fenced on it."""
        self.fence = FeedLease(self.redis, self.lease_key)
        return self.fence

    async def save(self, epoch: str, seq: int, rows: Iterable[Row], removed: Iterable[str] = ()) -> None:
        removed = list(removed)
        fence = self.fence
        args: list[str | bytes | int] = [
            fence.owner if fence else "", fence.ttl_ms if fence else 0, epoch, seq, now_ms(), len(removed)
        ]
        args += removed
        for row in rows:
            args += (row[SYM], orjson.dumps(row))
        done = await self.save_script(keys=[self.lease_key, self.quotes_key, self.feed_key], args=args)
        if done == -1:
            raise LeaseLost(f"not writing batch {seq} of {epoch}: the store holds a newer feed run")
        if not done:
            raise LeaseLost(f"not writing batch {seq}: the feed lease is not ours")

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


def make_store(target: RedisTarget | None, prefix: str) -> QuoteStore:
    """Redis when the channel layer is Redis (``target``), else process memory."""
    return RedisStore(target, prefix) if target else MemoryStore()
