"""Sources that push: a stream's trades and quotes reach the store through the unchanged feed."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer

from tests.helpers.waiting import eventually
from ticker.feed.publisher import Feed
from ticker.feed.sources import Tick
from ticker.feed.standby import serve
from ticker.feed.streams import DOWN_SECONDS, Pushed, Sink, SourceRefused
from ticker.layer import bus
from ticker.layer.store import MemoryStore
from ticker.models import Symbol
from ticker.protocol import LAST, TS, VOLUME


class HandFed:
    """A stream the test pushes into by hand: ``send`` reaches the feed once ``run`` has started."""

    def __init__(self, refuse: str = ""):
        self.refuse = refuse
        self.sink: Sink | None = None
        self.active: list[str] = []

    def set_listings(self, listings, last_prices):
        self.active = [item.ticker for item in listings]
        self.names = {item.ticker: item.feed_symbol for item in listings}

    async def run(self, sink):
        if self.refuse:
            raise SourceRefused(self.refuse)
        self.sink = sink
        await asyncio.Event().wait()


def test_pushed_hands_over_what_arrived_since_the_last_batch():
    source = Pushed(HandFed())
    source.trade(Tick("AAA", 10.5, 100, 1_000))
    source.heard("BBB", 2_000)
    source.heard("BBB", 1_500)  # late: the newer time stays
    assert source.ticks(1.0) == [Tick("AAA", 10.5, 100, 1_000)] and source.ticks(2.0) == []
    assert source.take_quoted() == {"BBB": 2_000} and source.take_quoted() == {}


def test_pushed_calls_a_link_down_once_it_has_been_down_for_a_while():
    source = Pushed(HandFed())
    assert not source.down(0.0)  # a stream that never says is taken as up
    source.link(False)
    went = source.down_since
    assert went is not None and not source.down(went + DOWN_SECONDS - 0.01)  # a reconnect may come back
    source.link(False)  # still down: since the first time it said so
    assert source.down_since == went and source.down(went + DOWN_SECONDS)
    source.link(True)
    assert source.down_since is None and not source.down(went + 100)


async def started(feed: Feed, stream: HandFed) -> asyncio.Task:
    task = asyncio.create_task(feed.run())
    await eventually(lambda: stream.sink is not None and feed.layer.groups.get(bus.CONTROL_GROUP),
                     what="the stream and the control listener to start")
    return task


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_pushed_trades_reach_the_store_in_batches_with_their_vendor_times(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    await sync_to_async(Symbol.objects.create)(ticker="BBB", name="B", prev_close=20, vendor_symbol="B.X")
    store, stream = MemoryStore(), HandFed()
    feed = Feed(Pushed(stream), store, layer=InMemoryChannelLayer(), batch_ms=20)
    task = await started(feed, stream)
    try:
        assert stream.names == {"AAA": "AAA", "BBB": "B.X"}  # the vendor's name, else the ticker
        stream.sink.trade(Tick("AAA", 10.25, 100, 1_700_000_000_123))
        stream.sink.trade(Tick("AAA", 10.5, 50, 1_700_000_000_456))
        stream.sink.trade(Tick("ZZZ", 1.0, 1, 1_700_000_000_456))  # not listed: dropped
        stream.sink.heard("BBB", 1_700_000_000_789)
        snap = await eventually(lambda: store.snapshot.seq >= 1 and store.snapshot, what="a batch")
        assert (snap.rows["AAA"][LAST], snap.rows["AAA"][VOLUME]) == (10.5, 150)
        await eventually(lambda: feed.heard.get("BBB"), what="the quote")
        assert feed.heard == {"AAA": 1_700_000_000_456, "BBB": 1_700_000_000_789}
        assert "ZZZ" not in snap.rows
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_a_pushed_stream_follows_admin_changes_while_it_runs(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    layer, stream = InMemoryChannelLayer(), HandFed()
    feed = Feed(Pushed(stream), MemoryStore(), layer=layer, batch_ms=20)
    task = await started(feed, stream)
    try:
        await sync_to_async(Symbol.objects.create)(ticker="NEW", name="N", prev_close=5)
        await sync_to_async(Symbol.objects.filter(ticker="AAA").update)(active=False)
        await layer.group_send(bus.CONTROL_GROUP, bus.symbols_message([]))
        await eventually(lambda: stream.active == ["NEW"], what="the stream to follow the change")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_a_refusing_stream_stops_the_feed_and_the_standby_loop_with_its_reason(database, settings):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with pytest.raises(SourceRefused, match=r"auth failed \(402\)"):
        await asyncio.wait_for(serve(lambda: Pushed(HandFed(refuse="auth failed (402)")), MemoryStore(), 20), 10)


async def batches(layer: InMemoryChannelLayer) -> str:
    channel = await layer.new_channel()
    await layer.group_add(bus.QUOTES_GROUP, channel)
    return channel


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_a_quote_without_a_trade_refreshes_the_rows_time_not_its_price(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    layer = InMemoryChannelLayer()
    feed = Feed(source := Pushed(HandFed()), MemoryStore(), layer=layer, batch_ms=20)
    channel = await batches(layer)
    await feed.start()
    feed.book.apply([Tick("AAA", 10.25, 7)], 1_000)  # its last trade, long ago
    source.heard("AAA", 1_700_000_000_789)
    feed.take_ticks(1.0)
    await feed.publish()
    [quoted] = (await layer.receive(channel))["rows"]
    assert (quoted[LAST], quoted[VOLUME]) == (10.25, 7) and quoted[TS] > 1_000  # fresh, as of the batch
    assert feed.store.snapshot.rows["AAA"][TS] == quoted[TS] and not feed.candles.changed  # no trade, no candle
    source.heard("AAA", 1_700_000_000_999)
    feed.take_ticks(1.02)
    assert not feed.pending  # refreshed a moment ago: not again yet


@pytest.mark.django_db(transaction=True, databases="__all__")
async def test_a_link_down_for_a_while_is_said_by_a_batch_of_its_own_and_so_is_its_return(database):
    await sync_to_async(Symbol.objects.create)(ticker="AAA", name="A", prev_close=10)
    layer = InMemoryChannelLayer()
    feed = Feed(source := Pushed(HandFed()), MemoryStore(), layer=layer, batch_ms=20)
    channel = await batches(layer)
    await feed.start()
    source.link(False)
    went = source.down_since
    assert went is not None
    feed.take_ticks(went + DOWN_SECONDS / 2)
    await feed.publish()  # not down for long enough: nothing to say
    feed.take_ticks(went + DOWN_SECONDS)
    await feed.publish()
    down = await layer.receive(channel)
    assert (down["seq"], down["rows"], down["down"]) == (1, [], True)
    feed.take_ticks(went + DOWN_SECONDS + 1)
    await feed.publish()  # still down: said already
    source.link(True)
    source.trade(Tick("AAA", 10.5, 1))
    feed.take_ticks(went + DOWN_SECONDS + 2)
    await feed.publish()
    back = await layer.receive(channel)
    assert (back["seq"], back["rows"][0][LAST], back["down"]) == (2, 10.5, False)
