"""What runs inside each server process: its hub, and in embedded mode the feed as well.

Daphne sends no ASGI lifespan events, so nothing can be started "at boot" the same way under
every server. Instead ``ensure_started()`` is awaited by the ASGI wrapper in
``dashboard.asgi`` on each request (a dictionary look-up once started): the first request or
connection starts the hub, and the embedded feed when ``TICKER_EMBEDDED_FEED`` is on.
One runtime per event loop, so a test that runs its own loop gets its own.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from django.conf import settings

from .feed import Feed
from .hub import Hub
from .sources import SimulatedMarket
from .store import make_store

log = logging.getLogger(__name__)

FIRST_SYNC_WAIT = 2.0  # seconds the first request waits for quotes, so the first paint has them


class Runtime:
    """The hub (and maybe the feed) of one process, started once."""

    def __init__(self) -> None:
        self.store = make_store()
        self.hub = Hub(self.store, settings.TICKER_NODE)
        self.feed_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if settings.TICKER_EMBEDDED_FEED:
            seed = settings.TICKER_FEED_SEED
            market = SimulatedMarket(rate=settings.TICKER_FEED_RATE, seed=int(seed) if seed else None)
            feed = Feed(market, self.store, batch_ms=settings.TICKER_FEED_BATCH_MS)
            await feed.start()
            self.feed_task = asyncio.create_task(self._run_feed(feed))
        await self.hub.start()
        try:
            await asyncio.wait_for(self.hub.synced.wait(), FIRST_SYNC_WAIT)
        except TimeoutError:
            log.warning("no quotes yet after %.0f s; serving an empty board until they come", FIRST_SYNC_WAIT)

    @staticmethod
    async def _run_feed(feed: Feed) -> None:
        try:
            await feed.publish_forever()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedded feed stopped")

    async def stop(self) -> None:
        await self.hub.stop()
        if self.feed_task:
            self.feed_task.cancel()
            await asyncio.gather(self.feed_task, return_exceptions=True)


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Runtime]] = (
    weakref.WeakKeyDictionary()
)


async def _start() -> Runtime:
    runtime = Runtime()
    await runtime.start()
    return runtime


async def ensure_started() -> Runtime:
    """The runtime of the running loop, started on first use (concurrent callers wait for it)."""
    loop = asyncio.get_running_loop()
    task = _runtimes.get(loop)
    if task is not None and task.done() and task.exception() is None:
        return task.result()
    if task is None or (task.done() and task.exception() is not None):
        task = _runtimes[loop] = loop.create_task(_start())
    return await asyncio.shield(task)


async def stop() -> None:
    """Stop the runtime of the running loop, if it was started (for tests and shutdown)."""
    task = _runtimes.pop(asyncio.get_running_loop(), None)
    if task is None:
        return
    if not task.done():
        task.cancel()
    elif task.exception() is None:
        await task.result().stop()
