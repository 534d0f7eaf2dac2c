"""``runfeed --source alpaca`` and ``--source coinbase`` as processes, on a real Redis, against the
fake vendors: the vendor's prices reach the Redis store, an admin change announced on the Redis
layer is followed on the open vendor connection, and a refusal ends the process with its reason."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from channels_redis.core import RedisChannelLayer

from tests.helpers.procs import start_feed
from tests.helpers.sites import prepared_env
from tests.helpers.vendors import ALPACA_KEY, ALPACA_SECRET, FakeAlpaca, FakeCoinbase, FakeVendor
from tests.helpers.waiting import eventually
from ticker.layer import bus
from ticker.layer.connection import RedisTarget
from ticker.layer.store import RedisStore
from ticker.protocol import LAST

pytestmark = pytest.mark.integration


def feed_env(seeded_database, tmp_path, redis_server, prefix: str, **extra: str) -> dict[str, str]:
    return prepared_env(seeded_database, tmp_path, CHANNEL_LAYER_URL=f"redis://127.0.0.1:{redis_server.port}/0",
                        CHANNEL_LAYER_PREFIX=prefix, APCA_API_KEY_ID=ALPACA_KEY, APCA_API_SECRET_KEY=ALPACA_SECRET,
                        **extra)


def set_symbols(db, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)


async def send_prices(fake: FakeVendor, vendor: str, symbol: str, price: str) -> None:
    if vendor == "alpaca":
        assert isinstance(fake, FakeAlpaca)
        await fake.publish(fake.trade(symbol, float(price), 100, 1_700_000_000_000))
    else:
        assert isinstance(fake, FakeCoinbase)
        await fake.tickers((symbol, price))


@pytest.mark.parametrize(("vendor", "fake_class", "vendor_symbol"),
                         [("alpaca", FakeAlpaca, "AAPL"), ("coinbase", FakeCoinbase, "BTC-USD")])
async def test_runfeed_on_a_vendor_fills_the_redis_store_and_follows_the_admin(
        vendor, fake_class, vendor_symbol, tmp_path, seeded_database, redis_server):
    prefix = f"vendors-{vendor}"
    env = feed_env(seeded_database, tmp_path, redis_server, prefix)
    db = tmp_path / "db.sqlite3"
    set_symbols(db, f"UPDATE ticker_symbol SET vendor_symbol = '{vendor_symbol}' WHERE ticker = 'AAPL'")
    set_symbols(db, "UPDATE ticker_symbol SET active = 0 WHERE ticker NOT IN ('AAPL', 'MSFT')")
    url = env["CHANNEL_LAYER_URL"]
    store = RedisStore(RedisTarget(url), prefix)
    async with fake_class() as fake:
        feed = start_feed(tmp_path, env, "--source", vendor, "--url", fake.url, "--batch-ms", "50")
        try:
            await eventually(lambda: fake.subscribed and fake.subscription(-1) == {vendor_symbol, "MSFT"}, 60,
                             what=f"runfeed to subscribe:\n{feed.tail()}")
            await send_prices(fake, vendor, vendor_symbol, "229.87")

            async def priced() -> bool:
                rows = (await store.load()).rows
                return "AAPL" in rows and rows["AAPL"][LAST] == 229.87

            await eventually(priced, 20, what="the price in the Redis store")
            # An admin pause, saved and announced on the Redis layer (as the admin does).
            set_symbols(db, "UPDATE ticker_symbol SET active = 0 WHERE ticker = 'MSFT'")
            layer = RedisChannelLayer(hosts=[url], prefix=prefix)
            await layer.group_send(bus.CONTROL_GROUP, bus.symbols_message([]))
            await eventually(lambda: fake.subscription(-1) == {vendor_symbol}, 20, what="the unsubscribe")
            assert len(fake.connections) == 1  # followed on the open connection
            await layer.close_pools()
        finally:
            await asyncio.to_thread(feed.stop)
            await store.redis.aclose()


async def test_runfeed_refused_by_the_vendor_exits_with_the_reason(tmp_path, seeded_database, redis_server):
    env = feed_env(seeded_database, tmp_path, redis_server, "vendors-refused")
    async with FakeAlpaca(secret="another") as fake:
        feed = start_feed(tmp_path, env, "--source", "alpaca", "--url", fake.url)
        try:
            await eventually(lambda: not feed.alive(), 60, what=f"runfeed to give up:\n{feed.tail()}")
        finally:
            await asyncio.to_thread(feed.stop)
    assert feed.popen.returncode == 1 and "alpaca error 402: auth failed" in feed.output()
    assert len(fake.connections) == 1
