"""A site fed by ``runfeed --source coinbase`` or ``--source alpaca`` against the vendor's fake,
whose symbols trade on their own until a test silences one: the end-to-end path of a vendor's
prices and of a stale symbol (vendor, feed, Redis, hubs under daphne and uvicorn, WebSocket,
SSE, polling, page, ``watch``).

Sync on purpose, so a browser test can use it as well as an async one: the fake vendor and its
trading run on an event loop of their own, in a thread.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from tests.helpers.procs import Proc, start_daphne, start_feed
from tests.helpers.sites import prepared_env
from tests.helpers.vendors import ALPACA_KEY, ALPACA_SECRET, FakeAlpaca, FakeCoinbase, FakeVendor

MARK_MS = 2000  # TICKER_STALE_MS for these sites: short, so a test waits seconds, not a minute
PRODUCTS = {  # the only active symbols, and their vendor's names for them
    "coinbase": {"AAPL": "BTC-USD", "MSFT": "ETH-USD"},
    "alpaca": {"AAPL": "AAPL", "MSFT": "MSFT"},
}
TICK_SECONDS = 0.1


def price_text(n: int) -> str:
    """The vendor's price at tick ``n`` as it writes it: four decimals, the last never a 0."""
    return f"229.{8701 + 2 * (n % 45)}"


@dataclass
class VendorSite:
    """The processes, the fake, and what it sends: the symbols that trade (``live``), the ones only
    quoted (``quoted``, Alpaca's quotes without trades), every price it sent (``sent``, as text)."""

    vendor: str
    servers: dict[str, Proc]  # daphne, uvicorn
    feed: Proc
    env: dict[str, str]
    fake: FakeVendor
    loop: asyncio.AbstractEventLoop
    live: set[str]
    quoted: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)

    def url(self, server: str) -> str:
        return f"http://127.0.0.1:{self.servers[server].port}"

    def _product(self, ticker: str) -> str:
        return PRODUCTS[self.vendor][ticker]

    def silence(self, ticker: str) -> None:
        """The fake stops sending ``ticker`` (the others go on)."""
        product = self._product(ticker)
        self.loop.call_soon_threadsafe(lambda: (self.live.discard(product), self.quoted.discard(product)))

    def resume(self, ticker: str) -> None:
        self.loop.call_soon_threadsafe(self.live.add, self._product(ticker))

    def quote_only(self, ticker: str) -> None:
        """Alpaca: ``ticker`` is quoted (bid and ask) but no longer trades."""
        product = self._product(ticker)
        self.loop.call_soon_threadsafe(lambda: (self.live.discard(product), self.quoted.add(product)))

    def lose(self, count: int) -> None:
        """Coinbase: skip ``count`` sequence numbers, messages lost on the way to the feed."""
        assert isinstance(self.fake, FakeCoinbase)
        self.loop.call_soon_threadsafe(self.fake.lose, count)

    def outage(self) -> None:
        """The vendor goes away: it closes the feed's connection and holds its next one."""
        asyncio.run_coroutine_threadsafe(self.fake.outage(), self.loop).result(10)

    def restore(self) -> None:
        self.loop.call_soon_threadsafe(self.fake.restore)


async def _send(site: VendorSite, n: int) -> None:
    """One tick of the fake: a price for every symbol that trades, a quote for every one quoted."""
    text = price_text(n)
    fake = site.fake
    if isinstance(fake, FakeCoinbase):
        await fake.tickers(*((product, text) for product in sorted(site.live)))
    else:
        assert isinstance(fake, FakeAlpaca)
        at_ms = int(time.time() * 1000)
        await fake.publish(*(fake.trade(product, float(text), 10, at_ms) for product in sorted(site.live)),
                           *(fake.quote(product, 99.5, 100.5, at_ms) for product in sorted(site.quoted)))
    site.sent.add(text)


async def _trade(site: VendorSite) -> None:
    fake = site.fake
    for n in itertools.count():
        await asyncio.sleep(TICK_SECONDS)
        if fake.connections and fake.subscription(-1) and (site.live or site.quoted):
            try:
                await _send(site, n)
            except ConnectionClosed:  # the feed just dropped it: the next tick goes to its next one
                continue


@contextmanager
def vendor_site(seeded: Path, tmp: Path, redis_port: int, prefix: str, vendor: str = "coinbase",
                servers: tuple[str, ...] = ("daphne", "uvicorn")) -> Iterator[VendorSite]:
    """runfeed on the fake ``vendor``, and the app ``servers``, all on the Redis at ``redis_port``."""
    env = prepared_env(seeded, tmp, CHANNEL_LAYER_URL=f"redis://127.0.0.1:{redis_port}/0",
                       CHANNEL_LAYER_PREFIX=prefix, TICKER_STALE_MS=str(MARK_MS),
                       APCA_API_KEY_ID=ALPACA_KEY, APCA_API_SECRET_KEY=ALPACA_SECRET)
    products = PRODUCTS[vendor]
    with sqlite3.connect(tmp / "db.sqlite3") as conn:
        conn.execute("UPDATE ticker_symbol SET active = 0")
        for ticker, product in products.items():
            conn.execute("UPDATE ticker_symbol SET active = 1, vendor_symbol = ? WHERE ticker = ?", (product, ticker))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake: FakeVendor = FakeCoinbase() if vendor == "coinbase" else FakeAlpaca()
    asyncio.run_coroutine_threadsafe(fake.__aenter__(), loop).result(10)
    logs = tmp / "logs"
    procs: dict[str, Proc] = {}
    feed = start_feed(logs, env, "--source", vendor, "--url", fake.url, "--batch-ms", "50")
    site = VendorSite(vendor, procs, feed, env, fake, loop, set(products.values()))
    trading = asyncio.run_coroutine_threadsafe(_trade(site), loop)
    try:
        for server in servers:
            procs[server] = start_daphne(logs, env, name=server, server=server)
        yield site
    finally:
        for proc in reversed(procs.values()):
            proc.stop()
        feed.stop()
        trading.cancel()
        asyncio.run_coroutine_threadsafe(fake.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
