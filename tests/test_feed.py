"""The feed: quote book, candles, and batches on a real (in-memory) channel layer."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer

from ticker.feed.candles import MINUTE_MS, CandleBook
from ticker.feed.publisher import Feed, write_candles
from ticker.feed.quotes import QuoteBook
from ticker.feed.sources import Listing, Tick
from ticker.layer import bus
from ticker.layer.store import MemoryStore, Snapshot
from ticker.models import Candle, Market, Symbol
from ticker.protocol import HIGH, LAST, LOW, OPEN, PREV_CLOSE, TS, VOLUME


def test_book_coalesces_a_batch_to_one_row_per_symbol():
    book = QuoteBook()
    book.set_listings([Listing("AAA", 10.0), Listing("BBB", 5.0)], {}, 0)
    changed = book.apply([Tick("AAA", 11.0, 100), Tick("AAA", 9.0, 200), Tick("ZZZ", 1.0, 1)], 50)
    assert changed == [["AAA", 9.0, 10.0, 10.0, 10.0, 9.0, 300, 50]]


def test_book_high_and_low_follow_published_prices():
    book = QuoteBook()
    book.set_listings([Listing("AAA", 10.0)], {}, 0)
    book.apply([Tick("AAA", 12.0, 1)], 1)
    book.apply([Tick("AAA", 8.0, 1)], 2)
    row = book.rows["AAA"]
    assert (row[OPEN], row[HIGH], row[LOW], row[LAST], row[VOLUME]) == (10.0, 12.0, 8.0, 8.0, 2)


def test_book_keeps_known_rows_and_applies_a_new_previous_close():
    book = QuoteBook()
    known = {"AAA": ["AAA", 12.0, 10.0, 10.0, 12.5, 9.5, 700, 5]}
    assert book.set_listings([Listing("AAA", 11.0)], known, 0) == [["AAA", 12.0, 11.0, 10.0, 12.5, 9.5, 700, 5]]
    assert book.rows["AAA"][LAST] == 12.0 and book.rows["AAA"][PREV_CLOSE] == 11.0
    assert book.set_listings([Listing("AAA", 11.0)], {}, 0) == []  # nothing changed: nothing to publish
    assert book.set_listings([Listing("AAA", 11.5)], {}, 0)[0][PREV_CLOSE] == 11.5


def test_book_touch_refreshes_a_quoted_rows_time_not_its_price_and_at_most_every_so_often():
    book = QuoteBook()
    book.set_listings([Listing("AAA", 10.0)], {}, 0)
    book.apply([Tick("AAA", 10.5, 5)], 2_000)
    assert book.touch(["AAA", "ZZZ"], 2_999, 1_000) == []  # updated within the second; ZZZ is not listed
    assert book.touch(["AAA"], 3_000, 1_000) == [["AAA", 10.5, 10.0, 10.0, 10.5, 10.0, 5, 3_000]]
    assert book.rows["AAA"][TS] == 3_000 and book.touch(["AAA"], 3_500, 1_000) == []


def test_candles_roll_over_each_minute():
    book = CandleBook()
    book.add("AAA", 10.0, 100, 0)
    book.add("AAA", 12.0, 50, 1000)
    book.add("AAA", 9.0, 10, 2000)
    book.add("AAA", 11.0, 5, MINUTE_MS + 1)
    bars = book.take_changed()
    assert [(b.start_ms, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (0, 10.0, 12.0, 9.0, 9.0, 160),
        (MINUTE_MS, 11.0, 11.0, 11.0, 11.0, 5),
    ]
    assert book.take_changed() == []


@pytest.mark.django_db(databases="__all__")
def test_candles_are_upserted_once_per_minute(database):
    sym = Symbol.objects.create(ticker="AAA", name="A", prev_close=10)
    book = CandleBook()
    book.add("AAA", 10.0, 100, 0)
    write_candles(book.take_changed(), {"AAA": sym.pk})
    book.add("AAA", 13.0, 100, 1000)
    write_candles(book.take_changed(), {"AAA": sym.pk})
    candle = Candle.objects.get()
    assert (candle.open, candle.high, candle.close, candle.volume) == (10.0, 13.0, 13.0, 200)


class ScriptedSource:
    """A source that returns prepared ticks, one list per call."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.active: list[str] = []

    def set_listings(self, listings, last_prices):
        self.active = [item.ticker for item in listings]

    def ticks(self, now):
        return self.batches.pop(0) if self.batches else []


class FlakyStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.fail = False

    async def save(self, *args, **kwargs):
        if self.fail:
            raise ConnectionError("store down")
        await super().save(*args, **kwargs)


async def listen(layer):
    channel = await layer.new_channel()
    await layer.group_add(bus.QUOTES_GROUP, channel)
    return channel


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_feed_publishes_numbered_batches_and_writes_the_store_first(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    await sync_to_async(Symbol.objects.create)(ticker="BBB", name="B", prev_close=20, active=False)
    layer, store = InMemoryChannelLayer(), MemoryStore()
    feed = Feed(ScriptedSource([[Tick("AAA", 11.0, 100)], [], [Tick("AAA", 12.0, 100)]]), store, layer=layer)
    channel = await listen(layer)
    await feed.start()
    assert set((await store.load()).rows) == {"AAA", "BBB"}  # a paused symbol keeps its row
    assert feed.source.active == ["AAA"]  # but does not tick
    for now in (1.0, 2.0, 3.0):
        feed.take_ticks(now)
        await feed.publish()
    first, second = await layer.receive(channel), await layer.receive(channel)
    assert (first["seq"], first["rows"][0][LAST]) == (1, 11.0)
    assert (second["seq"], second["rows"][0][LAST]) == (2, 12.0)  # the empty batch was not published
    assert first["epoch"] == second["epoch"] == feed.epoch
    assert (await store.load()).seq == 2


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_feed_keeps_rows_through_a_store_outage_and_rewrites_everything_after_it(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    await sync_to_async(Symbol.objects.create)(ticker="BBB", name="B", prev_close=20)
    await sync_to_async(Symbol.objects.create)(ticker="CCC", name="C", prev_close=30)
    layer, store = InMemoryChannelLayer(), FlakyStore()
    source = ScriptedSource([[Tick("AAA", 11.0, 100)], [Tick("BBB", 21.0, 100)], []])
    feed = Feed(source, store, layer=layer)
    channel = await listen(layer)
    await feed.start()
    store.fail = True
    store.snapshot = Snapshot()  # the outage lost what the store held (Redis restarted empty)
    for now in (1.0, 2.0):
        feed.take_ticks(now)
        assert not await feed.publish()
    assert feed.seq == 0
    store.fail = False
    feed.take_ticks(3.0)
    assert await feed.publish()
    batch = await layer.receive(channel)
    assert batch["seq"] == 1 and batch["source"] == "ScriptedSource"  # what the header will say
    assert {row[0]: row[LAST] for row in batch["rows"]} == {"AAA": 11.0, "BBB": 21.0, "CCC": 30.0}
    assert set((await store.load()).rows) == {"AAA", "BBB", "CCC"}


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_feed_follows_admin_changes_from_the_control_group(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    layer, store = InMemoryChannelLayer(), MemoryStore()
    feed = Feed(ScriptedSource([]), store, layer=layer, batch_ms=20)
    channel = await listen(layer)
    task = asyncio.create_task(feed.run())
    try:
        for _ in range(200):  # until the feed's control listener has joined its group
            if layer.groups.get(bus.CONTROL_GROUP):
                break
            await asyncio.sleep(0.005)
        await sync_to_async(Symbol.objects.create)(ticker="NEW", name="N", prev_close=5)
        await sync_to_async(Symbol.objects.filter(ticker="AAA").delete)()
        await layer.group_send(bus.CONTROL_GROUP, bus.symbols_message([]))
        batch = await asyncio.wait_for(layer.receive(channel), 2)
        assert [row[0] for row in batch["rows"]] == ["NEW"]
        assert batch["removed"] == ["AAA"]
        assert feed.source.active == ["NEW"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_a_halted_market_stops_every_symbol_and_reopening_restores_each_as_it_was(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    await sync_to_async(Symbol.objects.create)(ticker="BBB", name="B", prev_close=20, active=False)
    feed = Feed(ScriptedSource([]), MemoryStore(), layer=InMemoryChannelLayer())
    await sync_to_async(Market.objects.create)(pk=1, halted=True, reason="circuit breaker")
    await feed.reload_symbols()
    assert feed.source.active == [] and set(feed.book.rows) == {"AAA", "BBB"}  # on the board, not ticking
    await sync_to_async(Market.objects.filter(pk=1).update)(halted=False)
    await feed.reload_symbols()
    assert feed.source.active == ["AAA"]  # BBB was paused on its own before the halt
