"""The composition root: this process's quote store, hub and (embedded mode) feed.

``Services.from_settings()`` builds them from the settings; ``dashboard.asgi`` starts them on
the first request (daphne sends no lifespan events, so this is the one start-up path that
works the same under daphne and uvicorn) and puts them in every scope
(``ticker.web.services.attach``), where consumers and views read them. Nothing else finds them: no
module-level singleton, no look-up by event loop. A test builds its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from dashboard.drain import Drain, InFlight
from ticker import catalog_watch
from ticker.fanout.hub import Hub
from ticker.fanout.types import Batch, Catalog, Event, Rejoined
from ticker.feed.sources import SimulatedMarket
from ticker.feed.standby import serve
from ticker.feed.vendors import vendor_source
from ticker.layer import bus
from ticker.layer.store import QuoteStore, make_store
from ticker.models import Market, Symbol
from ticker.protocol import MAX_SYMBOLS, QuoteCodec
from ticker.web.metrics import registry_for

log = logging.getLogger(__name__)

FIRST_SYNC_WAIT = 2.0  # seconds the first request waits for quotes, so the first paint has them


def catalog_of(entries: list[dict[str, Any]], market: dict[str, Any] | None) -> Catalog:
    """The hub's catalog; paused symbols, or all while the market is halted, are quiet (never stale)."""
    status = market or {"state": "open", "reason": ""}
    keys = frozenset(entry["s"] for entry in entries)
    quiet = keys if status.get("state") == "halted" else frozenset(e["s"] for e in entries if e.get("paused"))
    return Catalog(keys, entries, status, quiet)


def read_catalog() -> Catalog:
    return catalog_of(Symbol.wire_list(), Market.wire())


async def load_catalog() -> Catalog:
    """The symbols and the market's state from the database, as the hub's catalog."""
    return await sync_to_async(read_catalog)()


async def hub_events(listener: bus.Listener) -> AsyncIterator[Event]:
    """The layer's messages as the hub's events."""
    async for message in listener.messages():
        kind = message["type"]
        if kind == bus.BATCH:
            yield Batch(message["epoch"], message["seq"], message["rows"], message["removed"], message.get("ts", 0),
                        message.get("stale_ms", 0), message.get("gaps", 0), message.get("source", ""),
                        message.get("down", False))
        elif kind == bus.SYMBOLS:
            yield catalog_of(message["symbols"], message.get("market"))
        elif kind == bus.REJOINED:
            yield Rejoined()


class Services:
    """What one server process runs for the ticker, started once."""

    def __init__(self, store: QuoteStore, hub: Hub, feed: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.hub = hub
        self.feed = feed
        self.feed_task: asyncio.Task[None] | None = None
        self.watch_task: asyncio.Task[None] | None = None  # catalog_watch, with an in-process layer
        self.starting: asyncio.Task[None] | None = None
        self.metrics = registry_for(hub)
        self.in_flight = InFlight()  # the requests being served, for the drain to wait for
        self.drain: Drain | None = None

    @classmethod
    def from_settings(cls, *, listener: bus.Listener | None = None) -> Services:
        store = make_store(settings.TICKER_REDIS, settings.CHANNEL_LAYER_PREFIX)

        def events() -> AsyncIterator[Event]:
            return hub_events(listener or bus.Listener([bus.QUOTES_GROUP, bus.CONTROL_GROUP]))

        codec = QuoteCodec(settings.TICKER_NODE)
        hub = Hub(
            codec, store.load, load_catalog, events,
            max_keys=MAX_SYMBOLS, fast_path=settings.TICKER_DAPHNE_FAST_PATH, sndbuf=settings.TICKER_SOCKET_SNDBUF,
            hold_limit=settings.TICKER_HOLD_LIMIT, marks=codec,
        )
        feed = None
        if settings.TICKER_EMBEDDED_FEED:
            seed = int(settings.TICKER_FEED_SEED) if settings.TICKER_FEED_SEED else None
            market = vendor_source(settings.TICKER_FEED_SOURCE, settings.TICKER_FEED_URL,
                                   alpaca_feed=settings.TICKER_ALPACA_FEED) or partial(
                SimulatedMarket, rate=settings.TICKER_FEED_RATE, seed=seed)
            feed = partial(serve, market, store, settings.TICKER_FEED_BATCH_MS)
        return cls(store, hub, feed)

    async def ready(self) -> None:
        """Start on first use (concurrent callers wait for the same start; a failed one is retried)."""
        task = self.starting
        if task is None or (task.done() and task.exception() is not None):
            task = self.starting = asyncio.get_running_loop().create_task(self.start())
        elif task.done():
            return
        await asyncio.shield(task)

    async def start(self) -> None:
        if settings.TICKER_SERVED_BY and self.drain is None:  # the server's process: SIGTERM drains
            self.drain = Drain(self.hub, self.in_flight, settings.TICKER_SERVED_BY, settings.TICKER_DRAIN_SECONDS)
            self.drain.install()
        if self.feed is not None:
            self.feed_task = asyncio.create_task(self.run_feed(self.feed))
        if catalog_watch.needed():
            self.watch_task = asyncio.create_task(catalog_watch.watch())
        await self.hub.start()
        try:
            await asyncio.wait_for(self.hub.synced.wait(), FIRST_SYNC_WAIT)
        except TimeoutError:
            log.warning("no quotes yet after %.0f s; serving an empty board until they come", FIRST_SYNC_WAIT)

    @staticmethod
    async def run_feed(feed: Callable[[], Awaitable[None]]) -> None:
        try:
            await feed()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedded feed stopped")

    async def stop(self) -> None:
        if self.starting is None:
            return
        await asyncio.gather(self.starting, return_exceptions=True)
        await self.hub.stop()
        for task in (self.feed_task, self.watch_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
