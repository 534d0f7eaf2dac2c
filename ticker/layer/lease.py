"""One active feed per Redis: a lease with a time to live, and a hot standby that waits for it.

The active feed holds ``<prefix>:feed-lease`` (value: its owner id) and renews it every
``ttl / 4``. A standby polls every ``ttl / 8`` and takes the lease as soon as it expires: at
most ``ttl + ttl / 8`` after the active feed died (2.25 s with the default 2 s). The quote
store fences every write on the lease it handed out (``RedisStore.lease()``), so a feed that lost its lease
without noticing (paused, partitioned) can neither write the store nor publish a batch.

A Redis outage does not take the lease away: nobody can take it while Redis is down. If Redis
comes back empty (no persistence), the first feed to ask gets the lease again. After a Sentinel
failover the promoted replica may lack the newest renewal (replication is asynchronous), so a
standby may take the lease while the old feed still thinks it holds it: the store's writes are
also fenced on the feed run (``ticker.epochs``), so the old feed can neither write over the new
run nor take the lease back from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Protocol

import redis.asyncio as redis

log = logging.getLogger(__name__)

# Renew: extend if we hold it, take it if nobody does, else report that someone else holds it.
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """Another feed holds the lease now: stop publishing."""


class Lease(Protocol):
    """What a feed holds while it publishes: ``acquire`` waits for it, ``keep`` raises
    ``LeaseLost`` when it is gone, ``release`` hands it over."""

    owner: str

    async def acquire(self) -> None: ...
    async def keep(self) -> None: ...
    async def release(self) -> None: ...


class NoLease:
    """The lease of a store only one feed can reach (process memory): always held."""

    owner = ""

    async def acquire(self) -> None:
        pass

    async def keep(self) -> None:
        await asyncio.Event().wait()  # never lost

    async def release(self) -> None:
        pass


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class FeedLease:
    """The lease of the active feed. ``acquire()`` waits for it; ``keep()`` renews it until lost."""

    def __init__(self, client: redis.Redis, key: str, owner: str | None = None, ttl: float = 2.0) -> None:
        self.redis = client
        self.key = key
        self.owner = owner or new_owner()
        self.ttl_ms = int(ttl * 1000)
        self.renew_script = client.register_script(_RENEW)
        self.release_script = client.register_script(_RELEASE)

    async def try_acquire(self) -> bool:
        return bool(await self.renew_script(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def acquire(self) -> None:
        """Wait until this process holds the lease (a hot standby until then)."""
        announced = False
        while True:
            try:
                if await self.try_acquire():
                    return
                if not announced:
                    holder = await self.redis.get(self.key)
                    holder = holder.decode() if isinstance(holder, bytes) else holder
                    log.info("standby: feed lease held by %s; waiting", holder or "?")
                    announced = True
            except (redis.RedisError, OSError) as exc:
                log.warning("standby: Redis unavailable (%s); retrying", exc)
            await asyncio.sleep(self.ttl_ms / 8000)

    async def keep(self) -> None:
        """Renew the lease until it is lost; then raise ``LeaseLost``. Redis errors are retried."""
        while True:
            await asyncio.sleep(self.ttl_ms / 4000)
            try:
                held = await self.try_acquire()
            except (redis.RedisError, OSError):
                continue  # nobody else can take it while Redis is down
            if not held:
                raise LeaseLost(f"feed lease {self.key} taken by another feed")

    async def release(self) -> None:
        """Give the lease up at once (a clean stop), so the standby need not wait for the TTL."""
        with contextlib.suppress(redis.RedisError, OSError):
            await self.release_script(keys=[self.key], args=[self.owner])
