"""A site fed by ``runfeed --source coinbase`` against the fake Coinbase, whose products tick on
their own until a test silences one: the end-to-end path of a stale symbol (vendor, feed, Redis,
hubs under daphne and uvicorn, WebSocket, SSE, polling, page, ``watch``).

Sync on purpose, so a browser test can use it as well as an async one: the fake vendor and its
ticking run on an event loop of their own, in a thread.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from tests.helpers.procs import Proc, start_daphne, start_feed
from tests.helpers.sites import prepared_env
from tests.helpers.vendors import FakeCoinbase

MARK_MS = 2000  # TICKER_STALE_MS for these sites: short, so a test waits seconds, not a minute
PRODUCTS = {"AAPL": "BTC-USD", "MSFT": "ETH-USD"}  # the only active symbols, and their products
TICK_SECONDS = 0.1


@dataclass
class VendorSite:
    """The processes, the fake and the products it keeps ticking (``live``)."""

    daphne: Proc
    uvicorn: Proc
    feed: Proc
    env: dict[str, str]
    fake: FakeCoinbase
    loop: asyncio.AbstractEventLoop
    live: set[str] = field(default_factory=lambda: set(PRODUCTS.values()))

    def url(self, server: str) -> str:
        proc = self.daphne if server == "daphne" else self.uvicorn
        return f"http://127.0.0.1:{proc.port}"

    def silence(self, product: str) -> None:
        """The fake stops sending ``product`` (the others go on)."""
        self.loop.call_soon_threadsafe(self.live.discard, product)

    def resume(self, product: str) -> None:
        self.loop.call_soon_threadsafe(self.live.add, product)

    def lose(self, count: int) -> None:
        """Skip ``count`` sequence numbers: messages lost on the way to the feed."""
        self.loop.call_soon_threadsafe(self.fake.lose, count)


async def _tick(fake: FakeCoinbase, live: set[str]) -> None:
    for n in itertools.count():
        await asyncio.sleep(TICK_SECONDS)
        prices = [(product, f"{100 + n % 50 / 100:.2f}") for product in sorted(live)]
        if prices and fake.connections and fake.subscribed[-1]:
            try:
                await fake.tickers(*prices)
            except ConnectionClosed:  # the feed just dropped it: the next tick goes to its next one
                continue


@contextmanager
def vendor_site(seeded: Path, tmp: Path, redis_port: int, prefix: str) -> Iterator[VendorSite]:
    """runfeed on the fake Coinbase, daphne and uvicorn, all on the Redis at ``redis_port``."""
    env = prepared_env(seeded, tmp, CHANNEL_LAYER_URL=f"redis://127.0.0.1:{redis_port}/0",
                       CHANNEL_LAYER_PREFIX=prefix, TICKER_STALE_MS=str(MARK_MS))
    with sqlite3.connect(tmp / "db.sqlite3") as conn:
        conn.execute("UPDATE ticker_symbol SET active = 0")
        for ticker, product in PRODUCTS.items():
            conn.execute("UPDATE ticker_symbol SET active = 1, vendor_symbol = ? WHERE ticker = ?", (product, ticker))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeCoinbase()
    asyncio.run_coroutine_threadsafe(fake.__aenter__(), loop).result(10)
    live = set(PRODUCTS.values())
    ticking = asyncio.run_coroutine_threadsafe(_tick(fake, live), loop)
    logs = tmp / "logs"
    procs: list[Proc] = []
    try:
        procs.append(start_feed(logs, env, "--source", "coinbase", "--url", fake.url, "--batch-ms", "50"))
        procs.append(start_daphne(logs, env, name="daphne"))
        procs.append(start_daphne(logs, env, name="uvicorn", server="uvicorn"))
        yield VendorSite(procs[1], procs[2], procs[0], env, fake, loop, live)
    finally:
        for proc in reversed(procs):
            proc.stop()
        ticking.cancel()
        asyncio.run_coroutine_threadsafe(fake.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
