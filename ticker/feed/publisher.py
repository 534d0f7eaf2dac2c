"""The price feed: turns a tick source into coalesced, numbered batches on the channel layer.

Every ``batch_ms`` the feed asks its source for the ticks since the last batch, folds them
into the quote book (one row per changed symbol: conflation is what a ticker wants), writes
the changed rows to the quote store and then publishes them to the ``ticker.quotes`` group
as batch ``seq``. ``seq`` rises by one per published batch within one feed run (``epoch``);
a batch that changes nothing is not published. If the store or the layer fails, the
changed rows are kept and go out with the next batch that succeeds: nothing is lost, the
seq does not advance.

The feed also listens on ``ticker.control`` for admin changes (reloads the symbols from the
database) and writes 1-minute candles to the database every few seconds, off the tick path.
A source that pushes (``streams.Pushed``) runs beside those loops; if it gives up for good
(``SourceRefused``), so does the feed.

``heard`` keeps, per symbol, the time of the last update its source gave (a trade, or a vendor's
quote); a quote without a trade refreshes the time of the symbol's row, not its price, at most
once a second or every tenth of the mark (``QuoteBook.touch``). Every batch carries the feed's
mark (``stale_ms``, ``marks``): how long a symbol may go without an update before the hubs call
it stale; whether the source's link to its vendor is down (``down``: then every symbol is stale,
and a batch says so as soon as it is, rows or not, and as the feed stops on a refusal); and how
many messages the source lost this run (a vendor's sequence gaps), for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from ..epochs import new_epoch
from ..layer import bus
from ..layer.lease import LeaseLost
from ..layer.store import QuoteStore, now_ms
from ..models import Candle, Market, Symbol
from ..protocol import LAST, SYM, TS, Row
from .candles import Bar, CandleBook
from .marks import describe, stale_mark
from .quotes import QuoteBook
from .sources import Listing, Source
from .streams import Pushed

log = logging.getLogger(__name__)

CANDLE_FLUSH_SECONDS = 5.0
QUOTE_REFRESH_MS = 1000  # a quote refreshes a row's time at most this often (and a tenth of the mark)


def load_symbols() -> tuple[list[Symbol], bool]:
    """Every symbol, and whether the market is halted (then none of them ticks)."""
    return list(Symbol.objects.all()), Market.wire()["state"] == "halted"


def write_candles(bars: list[Bar], ids: dict[str, int]) -> None:
    """Upsert candles (one row per symbol and minute)."""
    objs = [
        Candle(
            symbol_id=ids[b.symbol],
            start=datetime.fromtimestamp(b.start_ms / 1000, tz=UTC),
            open=b.open, high=b.high, low=b.low, close=b.close, volume=b.volume,
        )
        for b in bars
        if b.symbol in ids
    ]
    Candle.objects.bulk_create(
        objs,
        update_conflicts=True,
        unique_fields=["symbol", "start"],
        update_fields=["open", "high", "low", "close", "volume"],
    )


class Feed:
    """One feed run. ``run()`` until cancelled (or until a finite source is exhausted)."""

    def __init__(
        self,
        source: Source,
        store: QuoteStore,
        *,
        layer: BaseChannelLayer | None = None,
        batch_ms: int = 100,
    ) -> None:
        if batch_ms < 10:
            raise ValueError("batch_ms must be at least 10")
        self.source = source
        self.store = store
        self.layer = layer or get_channel_layer()
        self.batch_seconds = batch_ms / 1000
        self.epoch = ""  # this run's, once ``start`` has read the store (``ticker.epochs``)
        self.seq = 0
        self.book = QuoteBook()
        self.candles = CandleBook()
        self.ids: dict[str, int] = {}
        self.pending: dict[str, Row] = {}  # changed rows not yet published
        self.removed: set[str] = set()  # deleted symbols not yet published
        self.published_at = 0.0  # monotonic time of the last published batch
        self.failing = False  # the last publish failed
        self.heard: dict[str, int] = {}  # symbol -> epoch ms of its source's last update
        self.down = False  # the source's link to its vendor is down (``Pushed.down``)
        self.said_down = False  # as the last published batch said
        self.stale_ms = stale_mark(source, settings.TICKER_STALE_MS)
        self.refresh_ms = min(QUOTE_REFRESH_MS, self.stale_ms // 10)  # how often quotes refresh a row
        self.label = describe(source)  # where the prices come from, for the board's header

    async def reload_symbols(self, known: Mapping[str, Row] | None = None) -> None:
        """Read the symbols from the database and start, pause or drop them in the source and book;
        a symbol new to the book continues from its row in ``known`` (the store's, at the start)."""
        symbols, halted = await sync_to_async(load_symbols)()
        self.ids = {s.ticker: s.pk for s in symbols}
        listings = [
            Listing(s.ticker, float(s.prev_close), float(s.tick_size), s.volatility, s.vendor_symbol)
            for s in symbols
        ]
        before = set(self.book.rows)
        changed = self.book.set_listings(listings, known or {}, now_ms())
        ticking = [] if halted else [item for item, s in zip(listings, symbols, strict=True) if s.active]
        self.source.set_listings(ticking, self.book.last_prices())
        gone = before - set(self.book.rows)
        self.removed |= gone
        for sym in gone:
            self.pending.pop(sym, None)
            self.heard.pop(sym, None)
        self.pending.update((row[SYM], row) for row in changed)
        log.info("feed %s: %d symbols (%d ticking%s)", self.epoch, len(symbols), len(ticking),
                 ", market halted" if halted else "")

    async def publish(self) -> bool:
        """Write and publish what is pending as the next batch; False (and kept) if that failed."""
        if not self.pending and not self.removed and not self.failing and self.down == self.said_down:
            return True
        # After a failure the store may have lost everything (a Redis restart without
        # persistence): write every row, not just the changed ones.
        rows = list((self.book.rows if self.failing else self.pending).values())
        removed = sorted(self.removed)
        seq = self.seq + 1
        try:
            await self.store.save(self.epoch, seq, rows, removed)
            await self.layer.group_send(bus.QUOTES_GROUP, bus.batch_message(
                self.epoch, seq, rows, removed, now_ms(), stale_ms=self.stale_ms, gaps=self.gaps(),
                source=self.label, down=self.down))
        except LeaseLost:
            raise
        except Exception as exc:
            if not self.failing:
                log.warning("feed: batch %d not published (%s); keeping the changes for the next one", seq, exc)
            self.failing = True
            return False
        if self.failing:
            log.info("feed: publishing again from batch %d", seq)
        self.failing = False
        self.seq = seq
        self.pending.clear()
        self.removed.clear()
        self.said_down = self.down
        self.published_at = time.monotonic()
        return True

    def take_ticks(self, now: float) -> None:
        """Fold in what the source gave since the last batch: trades move prices, quotes without a
        trade refresh their rows' time; and note whether the source's link is down."""
        ticks = self.source.ticks(now)
        ts = now_ms()
        quoted: dict[str, int] = {}
        if isinstance(self.source, Pushed):
            quoted = self.source.take_quoted()
            self.down = self.source.down(now)
        self.note_heard(quoted.items())
        volumes: dict[str, int] = {}
        for tick in ticks:
            volumes[tick.symbol] = volumes.get(tick.symbol, 0) + tick.size
        self.note_heard((tick.symbol, tick.at_ms or ts) for tick in ticks)
        for row in self.book.apply(ticks, ts):
            self.pending[row[SYM]] = row
            self.candles.add(row[SYM], row[LAST], volumes[row[SYM]], row[TS])
        # After the trades: a symbol that traded in this batch is fresh already.
        for row in self.book.touch(quoted, ts, self.refresh_ms):
            self.pending[row[SYM]] = row

    def gaps(self) -> int:
        """Messages the source lost this run: a vendor stream's sequence gaps (0 for the others)."""
        return int(getattr(self.source.stream, "gaps", 0)) if isinstance(self.source, Pushed) else 0

    def note_heard(self, updates: Iterable[tuple[str, int]]) -> None:
        """Keep the latest update time of each listed symbol."""
        heard, rows = self.heard, self.book.rows
        for sym, at_ms in updates:
            if sym in rows and at_ms > heard.get(sym, 0):
                heard[sym] = at_ms

    async def flush_candles(self) -> None:
        bars = self.candles.take_changed()
        if not bars:
            return
        try:
            await sync_to_async(write_candles)(bars, self.ids)
        except Exception as exc:
            log.warning("feed: %d candles not written (%s); retrying", len(bars), exc)
            for bar in bars:
                self.candles.changed.setdefault((bar.symbol, bar.start_ms), bar)

    async def _candle_loop(self) -> None:
        while True:
            await asyncio.sleep(CANDLE_FLUSH_SECONDS)
            await self.flush_candles()

    async def _control_loop(self) -> None:
        joins = 0
        async for message in bus.Listener([bus.CONTROL_GROUP], self.layer).messages():
            if message["type"] == bus.REJOINED:
                joins += 1
                if joins == 1:
                    continue  # ``start`` has just read the symbols
            if message["type"] in (bus.SYMBOLS, bus.REJOINED):
                try:
                    await self.reload_symbols()
                except Exception:
                    log.exception("feed: could not reload symbols")

    async def start(self) -> None:
        """Load the symbols, prices continued from the store, and publish the full book as batch 0 of
        a new epoch: one ordered after the run the store recorded, whatever this host's clock says."""
        stored = await self.store.load()
        self.epoch = new_epoch(after=stored.epoch)
        await self.reload_symbols(stored.rows)
        while True:
            try:
                await self.store.save(self.epoch, 0, list(self.book.rows.values()))
                break
            except LeaseLost:
                raise
            except Exception as exc:
                log.warning("feed: store unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)
        self.pending.clear()
        self.removed.clear()
        self.published_at = time.monotonic()
        log.info("feed %s started", self.epoch)

    async def run(self) -> None:
        """Start, then publish until cancelled or the source ends."""
        await self.start()
        await self.publish_forever()

    async def publish_forever(self) -> None:
        """Publish a batch every ``batch_ms`` (after ``start``) until cancelled or the source ends."""
        helpers = [asyncio.create_task(self._control_loop()), asyncio.create_task(self._candle_loop())]
        stream = asyncio.create_task(self.source.run()) if isinstance(self.source, Pushed) else None
        if stream:
            helpers.append(stream)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not getattr(self.source, "finished", False):
                if stream and stream.done():
                    if stream.exception() is not None:  # refused for good: the board shows the source gone
                        self.down = True
                        await self.publish()
                    stream.result()  # SourceRefused: the vendor said no for good
                    break
                next_at += self.batch_seconds
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_at = loop.time()  # fell behind: don't burst to catch up
                self.take_ticks(time.monotonic())
                await self.publish()
            await self.flush_candles()
        finally:
            for task in helpers:
                task.cancel()

