"""Where the scaled mode's Redis is, and the one way to reach it: the channel layer's host entry
and the client the quote store and the feed lease use (``RedisTarget``).

Either one Redis at a URL (``CHANNEL_LAYER_URL=redis://HOST:PORT/DB``), or the master that Redis
Sentinel names (``TICKER_REDIS_SENTINELS=HOST:PORT,HOST:PORT,…`` and ``TICKER_REDIS_MASTER``,
``ticker`` by default): every connection then asks the sentinels where the master is, so after
a failover it reaches the replica they promoted (docs/DEPLOYMENT.md, "Redis with Sentinel").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as redis

DEFAULT_MASTER = "ticker"
# How long a question to one sentinel may take (seconds); the next one is asked after it.
SENTINEL_TIMEOUT = 1.0


@dataclass(frozen=True)
class RedisTarget:
    """One Redis (``url``), or the master named ``master`` that the ``sentinels`` watch."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER

    def layer_host(self, **options: Any) -> dict[str, Any]:
        """The entry of channels_redis's ``hosts``, with ``options`` for each of its connections."""
        if not self.sentinels:
            return {"address": self.url, **options}
        return {"sentinels": list(self.sentinels), "master_name": self.master, **options,
                "sentinel_kwargs": sentinel_options()}

    def client(self, **options: Any) -> redis.Redis:
        """A client of this Redis (of its master, whichever it is at each connection)."""
        import redis.asyncio as redis
        from redis.asyncio.sentinel import Sentinel

        if not self.sentinels:
            return redis.Redis.from_url(self.url, **options)
        sentinel = Sentinel(self.sentinels, sentinel_kwargs=sentinel_options())  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(self.master, **options)
        return client


def sentinel_options() -> dict[str, Any]:
    return {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}


def redis_target(url: str, sentinels: str = "", master: str = "") -> RedisTarget | None:
    """The target the settings name (None: no Redis, the embedded mode).

    Raises:
        ValueError: both a URL and sentinels, or a sentinel that is not ``HOST:PORT``.
    """
    addresses = [item.strip() for item in sentinels.split(",") if item.strip()]
    if not addresses:
        return RedisTarget(url=url) if url else None
    if url:
        raise ValueError("CHANNEL_LAYER_URL and TICKER_REDIS_SENTINELS name two Redis: set one")
    parsed = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"TICKER_REDIS_SENTINELS: {address!r} is not HOST:PORT")
        parsed.append((host.strip("[]"), int(port)))
    return RedisTarget(sentinels=tuple(parsed), master=master.strip() or DEFAULT_MASTER)
