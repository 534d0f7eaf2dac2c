"""Where Redis is (ticker/layer/connection.py): one URL, or the master Redis Sentinel names, for
the channel layer, the quote store and the feed lease alike. No connection is made here."""

from __future__ import annotations

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from ticker.layer.connection import DEFAULT_MASTER, SENTINEL_TIMEOUT, RedisTarget, redis_target


def test_no_redis_is_the_embedded_mode_and_a_url_is_one_redis():
    assert redis_target("", "", "") is None
    target = redis_target("redis://cache:6379/2")
    assert target == RedisTarget(url="redis://cache:6379/2")
    assert target.layer_host(socket_timeout=None) == {"address": "redis://cache:6379/2", "socket_timeout": None}
    assert target.client(socket_timeout=5).connection_pool.connection_kwargs["db"] == 2


def test_sentinels_name_the_master_for_the_layer_the_store_and_the_lease():
    target = redis_target("", " sentinel-1:26379, 10.0.0.2:26380 ,[::1]:26381", "")
    assert target.sentinels == (("sentinel-1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert target.master == DEFAULT_MASTER
    host = target.layer_host(socket_timeout=None, max_connections=10_000)
    assert host == {"sentinels": list(target.sentinels), "master_name": "ticker", "socket_timeout": None,
                    "max_connections": 10_000,
                    "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}}
    client = redis_target("", "s:1", "prices").client(socket_timeout=5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "prices" and pool.is_master
    assert pool.connection_kwargs["socket_timeout"] == 5


@pytest.mark.parametrize(("url", "sentinels", "message"), [
    ("redis://r:6379/0", "s:26379", "name two Redis: set one"),
    ("", "sentinel-1", "'sentinel-1' is not HOST:PORT"),
    ("", "s:port", "'s:port' is not HOST:PORT"),
])
def test_a_target_that_is_not_one_redis_is_refused(url, sentinels, message):
    with pytest.raises(ValueError, match=message):
        redis_target(url, sentinels)
