"""Vendor adapters against fake vendors on loopback that speak each one's documented envelope.

Each test runs the real feed (``publisher.Feed``) on a vendor's stream in this process, with
the in-memory layer and store, and asserts what reaches the store: trades at the vendor's exact
prices, quotes as signs of life, admin changes followed on the open connection, reconnects
that subscribe everything again, and bad frames that are skipped without stopping anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import asynccontextmanager
from io import StringIO

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import CommandError, call_command
from websockets.asyncio.client import connect

from tests.helpers.vendors import ALPACA_KEY, ALPACA_SECRET, FakeAlpaca, FakeBinance, FakeCoinbase
from tests.helpers.waiting import eventually
from ticker.feed import streams
from ticker.feed.publisher import Feed
from ticker.feed.streams import Pushed, SourceRefused
from ticker.feed.vendors import vendor_source, vendor_stream
from ticker.feed.vendors.alpaca import Alpaca
from ticker.feed.vendors.base import Backoff, VendorStream, price, rfc3339_ms, size
from ticker.feed.vendors.binance import Binance
from ticker.feed.vendors.coinbase import Coinbase
from ticker.layer import bus
from ticker.layer.store import MemoryStore
from ticker.models import Symbol
from ticker.protocol import LAST, TS, VOLUME

on_db = pytest.mark.django_db(transaction=True)  # the feed reads its symbols in another thread
FAST = Backoff(first=0.01, cap=0.05)  # reconnect at once: the tests wait for conditions, not delays
AT = 1_700_000_000_123


# The pieces: prices, sizes, times, backoff, choosing a vendor.


@pytest.mark.parametrize("text", ["43210.55", "0.1", "1.005", "0.00012345", "187.12", "99999.99999999"])
def test_a_vendor_price_is_written_with_the_vendors_digits(text):
    assert orjson.dumps(price(text)).decode() == text  # what the store and the protocol write
    assert orjson.dumps(price(orjson.loads(text))).decode() == text  # a JSON number (Alpaca) too


@pytest.mark.parametrize("bad", ["", "abc", "NaN", "Infinity", "-1", "0", "1e999", "1e-999", None, True, [1],
                                 float("nan")])
def test_a_price_that_is_not_positive_and_finite_is_refused(bad):
    with pytest.raises(ValueError, match="price"):
        price(bad)


def test_sizes_are_whole_units_and_times_are_rfc3339_to_the_millisecond():
    assert (size(100), size("12.5"), size("0.0012")) == (100, 12, 0)
    for bad in ["-1", "1e999999999", float("inf"), "x"]:
        with pytest.raises(ValueError, match="size"):
            size(bad)
    assert rfc3339_ms("2023-11-14T22:13:20.123456789Z") == AT
    assert rfc3339_ms("2023-11-14T17:13:20.1-05:00") == AT - 23
    assert rfc3339_ms("2023-11-14T22:13:20Z") == AT - 123
    with pytest.raises(ValueError, match="RFC 3339"):
        rfc3339_ms("1700000000")


def test_backoff_draws_full_jitter_under_a_growing_cap():
    rng, backoff = random.Random(7), Backoff(first=0.5, cap=30.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (1000, 30.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(500)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.1  # the whole range, jittered


def test_a_vendor_is_chosen_by_name_with_its_url_and_credentials_from_the_environment(monkeypatch):
    assert vendor_source("simulated") is None
    assert vendor_stream("coinbase").url == "wss://advanced-trade-ws.coinbase.com"
    assert vendor_stream("binance", "ws://127.0.0.1:9/ws").url == "ws://127.0.0.1:9/ws"
    env = {"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"}
    assert vendor_stream("alpaca", environ=env).url == "wss://stream.data.alpaca.markets/v2/iex"
    assert vendor_stream("alpaca", alpaca_feed="sip", environ=env).url.endswith("/v2/sip")
    assert vendor_stream("alpaca", alpaca_feed="test", environ=env).url.endswith("/v2/test")  # FAKEPACA
    for name, kwargs, message in [("alpaca", {"environ": {}}, "APCA_API_KEY_ID"),
                                  ("alpaca", {"environ": env, "alpaca_feed": "opra"}, "unknown feed"),
                                  ("coinbase", {"url": "http://x"}, "ws:// or wss://"),
                                  ("nasdaq", {}, "unknown source")]:
        with pytest.raises(ValueError, match=message):
            vendor_stream(name, **kwargs)
    monkeypatch.setenv("APCA_API_KEY_ID", "k")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s")
    make = vendor_source("alpaca", "ws://127.0.0.1:9/v2/test")
    assert make is not None and isinstance(make().stream, Alpaca)  # a new connection per feed run


# The feed on a vendor's stream.


def symbols(*rows: tuple[str, str]) -> None:
    """Active symbols ``(ticker, vendor_symbol)``."""
    for ticker, vendor in rows:
        Symbol.objects.create(ticker=ticker, name=ticker, prev_close=100, vendor_symbol=vendor)


@asynccontextmanager
async def feed_on(stream: VendorStream):
    """The feed running on ``stream``; yields once it is connected and listening to the admin."""
    layer, store = InMemoryChannelLayer(), MemoryStore()
    feed = Feed(Pushed(stream), store, layer=layer, batch_ms=20)
    task = asyncio.create_task(feed.run())
    try:
        await eventually(lambda: task.done() or (stream.connected and layer.groups.get(bus.CONTROL_GROUP)),
                         what="the feed to connect")
        if task.done():
            task.result()
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def row(feed: Feed, ticker: str) -> list | None:
    """The store's row of ``ticker``; None before the feed wrote one."""
    return feed.store.snapshot.rows.get(ticker)


async def priced(feed: Feed, ticker: str, last: float) -> list:
    def at_last() -> list | None:
        current = row(feed, ticker)
        return current if current is not None and current[LAST] == last else None

    return await eventually(at_last, what=f"{ticker} at {last} in the store")


async def admin_change(feed: Feed, change) -> None:
    await sync_to_async(change)()
    await feed.layer.group_send(bus.CONTROL_GROUP, bus.symbols_message([]))


def alpaca(fake: FakeAlpaca, **options) -> Alpaca:
    return Alpaca(ALPACA_KEY, ALPACA_SECRET, fake.url, backoff=FAST, **options)


@on_db
async def test_alpaca_logs_in_subscribes_trades_and_quotes_and_its_trades_reach_the_store():
    await sync_to_async(symbols)(("AAPL", ""), ("BRK-B", "BRK.B"))
    async with FakeAlpaca() as fake, feed_on(alpaca(fake)) as feed:
        assert fake.frames(action="auth") == [{"action": "auth", "key": ALPACA_KEY, "secret": ALPACA_SECRET}]
        await eventually(lambda: fake.subscription(-1) == {"AAPL", "BRK.B"}, what="the subscription")
        assert fake.frames(action="subscribe")[0]["quotes"] == ["AAPL", "BRK.B"]
        await fake.publish(fake.trade("BRK.B", 472.31, 100, AT), fake.trade("BRK.B", 472.3, 25, AT + 5),
                           fake.trade("AAPL", 229.87, 7, AT), fake.quote("AAPL", 229.86, 229.88, AT + 9))
        brk = await priced(feed, "BRK-B", 472.3)
        assert brk[VOLUME] == 125 and row(feed, "AAPL")[LAST] == 229.87
        await eventually(lambda: feed.heard == {"BRK-B": AT + 5, "AAPL": AT + 9}, what="the quote's time")


@on_db
async def test_alpaca_refusing_the_credentials_stops_the_feed_with_the_reason_and_no_retry():
    await sync_to_async(symbols)(("AAPL", ""))
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(bus.QUOTES_GROUP, channel)
    async with FakeAlpaca(secret="another") as fake:
        feed = Feed(Pushed(stream := alpaca(fake)), MemoryStore(), layer=layer, batch_ms=20)
        with pytest.raises(SourceRefused, match="alpaca error 402: auth failed"):
            await asyncio.wait_for(feed.run(), 10)
        assert stream.connections == 1 and len(fake.connections) == 1
    last = await layer.receive(channel)  # the board hears the source is gone: every symbol stale
    assert last["down"] and last["rows"] == []


@on_db
async def test_alpaca_connection_limit_is_said_plainly_not_retried():
    await sync_to_async(symbols)(("AAPL", ""))
    async with FakeAlpaca(limit=1) as fake, connect(fake.url) as _other_process:
        await eventually(lambda: len(fake.connections) == 1, what="the other connection")
        feed = Feed(Pushed(stream := alpaca(fake)), MemoryStore(), layer=InMemoryChannelLayer(), batch_ms=20)
        with pytest.raises(SourceRefused, match=r"406: connection limit exceeded .*most plans allow one"):
            await asyncio.wait_for(feed.run(), 10)
        assert stream.connections == 1


@on_db
async def test_alpaca_follows_admin_changes_on_the_open_connection():
    await sync_to_async(symbols)(("AAPL", ""), ("MSFT", ""))
    async with FakeAlpaca() as fake, feed_on(stream := alpaca(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL", "MSFT"}, what="the subscription")
        await admin_change(feed, lambda: (symbols(("NVDA", "")), Symbol.objects.filter(ticker="MSFT").update(
            active=False)))
        await eventually(lambda: fake.subscription(-1) == {"AAPL", "NVDA"}, what="the admin's change")
        assert fake.frames(action="unsubscribe") == [{"action": "unsubscribe", "trades": ["MSFT"],
                                                      "quotes": ["MSFT"]}]
        await fake.publish(fake.trade("NVDA", 141.98, 10, AT))
        await priced(feed, "NVDA", 141.98)
        assert stream.connections == 1 and len(fake.connections) == 1  # no reconnect


@on_db
async def test_alpaca_bad_frames_are_skipped_and_counted_and_the_feed_goes_on(caplog):
    await sync_to_async(symbols)(("AAPL", ""))
    async with FakeAlpaca() as fake, feed_on(stream := alpaca(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL"}, what="the subscription")
        for text in ["not json", '{"T":"t"}', "[1]", '[{"S":"AAPL"}]', "[]", '[{"T":"unknown-kind"}]']:
            await fake.raw(text)
        await fake.send([fake.trade("AAPL", "abc", 1, AT), {**fake.trade("AAPL", -5, 1, AT)},
                         {**fake.trade("AAPL", 230.5, 1, AT), "t": "yesterday"},
                         fake.trade("AAPL", 230.25, 3, AT)])  # the good one of four still counts
        await priced(feed, "AAPL", 230.25)
        assert stream.malformed == 7 and stream.connections == 1
        assert sum("cannot read" in r.message for r in caplog.records) == 1  # said once per connection


@on_db
async def test_alpaca_a_burst_is_coalesced_into_one_row_with_every_share_counted():
    await sync_to_async(symbols)(("AAPL", ""), ("MSFT", ""))
    async with FakeAlpaca() as fake, feed_on(alpaca(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL", "MSFT"}, what="the subscription")
        for chunk in range(20):
            await fake.publish(*(fake.trade(("AAPL", "MSFT")[i % 2], 200 + (chunk * 50 + i) / 100, 1, AT)
                                 for i in range(50)))
        await priced(feed, "MSFT", 209.99)
        aapl = await priced(feed, "AAPL", 209.98)
        assert aapl[VOLUME] == 500 and row(feed, "MSFT")[VOLUME] == 500


@on_db
async def test_alpaca_a_server_disconnect_reconnects_logs_in_and_subscribes_everything_again():
    await sync_to_async(symbols)(("AAPL", ""), ("MSFT", ""))
    async with FakeAlpaca() as fake, feed_on(stream := alpaca(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL", "MSFT"}, what="the subscription")
        await fake.drop()
        await eventually(lambda: len(fake.connections) == 2 and fake.subscription(1) == {"AAPL", "MSFT"},
                         what="a new connection, subscribed")
        assert len(fake.frames(1, action="auth")) == 1 and stream.connections == 2
        await fake.publish(fake.trade("MSFT", 421.5, 1, AT))
        await priced(feed, "MSFT", 421.5)


@on_db
async def test_alpaca_a_dead_link_is_found_by_its_unanswered_pings_and_replaced():
    await sync_to_async(symbols)(("AAPL", ""))
    async with FakeAlpaca() as fake, feed_on(alpaca(fake, ping=0.2)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL"}, what="the subscription")
        fake.mute()
        await eventually(lambda: len(fake.connections) == 2 and fake.subscription(1) == {"AAPL"},
                         what="a new connection after the silence")
        await fake.publish(fake.trade("AAPL", 231.0, 1, AT))
        await priced(feed, "AAPL", 231.0)


@on_db
async def test_alpaca_test_stream_carries_fakepaca():
    await sync_to_async(symbols)(("FAKEPACA", ""))
    async with FakeAlpaca() as fake:
        fake.path = "/v2/test"
        async with feed_on(alpaca(fake)) as feed:
            await eventually(lambda: fake.subscription(-1) == {"FAKEPACA"}, what="the subscription")
            await fake.publish(fake.trade("FAKEPACA", 123.45, 100, AT))
            await priced(feed, "FAKEPACA", 123.45)


@on_db
async def test_alpaca_quotes_without_trades_keep_a_symbol_fresh_at_its_last_price(settings):
    settings.TICKER_STALE_MS = 100  # so quotes refresh a row every 10 ms, not every second
    await sync_to_async(symbols)(("AAPL", ""))
    async with FakeAlpaca() as fake, feed_on(alpaca(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL"}, what="the subscription")
        await fake.publish(fake.trade("AAPL", 229.87, 7, AT))
        traded = await priced(feed, "AAPL", 229.87)

        async def quoted() -> list | None:
            await fake.publish(fake.quote("AAPL", 229.86, 229.88, AT + 9))
            current = row(feed, "AAPL")
            return current if current[TS] > traded[TS] else None

        fresh = await eventually(quoted, what="a quote to refresh the row")
        assert fresh[:TS] == traded[:TS]  # the price, the day's figures, the volume: as the trade left them


@on_db
async def test_a_vendor_that_goes_away_is_told_to_the_feed_as_a_link_down_and_its_return_too(monkeypatch):
    monkeypatch.setattr(streams, "DOWN_SECONDS", 0.05)
    await sync_to_async(symbols)(("AAPL", ""))
    async with FakeAlpaca() as fake, feed_on(stream := alpaca(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"AAPL"} and not feed.said_down, what="the subscription")
        await fake.outage()  # the connection is closed; the next one waits in its handshake
        await eventually(lambda: feed.said_down, what="the feed to say the link is down")
        assert not stream.connected
        fake.restore()
        await eventually(lambda: len(fake.connections) == 2 and not feed.said_down, what="the link back, said")
        await eventually(lambda: fake.subscription(1) == {"AAPL"}, what="subscribed again")


def coinbase(fake: FakeCoinbase, **options) -> Coinbase:
    return Coinbase(fake.url, backoff=FAST, **options)


@on_db
async def test_coinbase_ticker_prices_arrive_as_the_vendors_strings_under_our_tickers():
    await sync_to_async(symbols)(("BTC", "BTC-USD"), ("ETH-USD", ""))
    async with FakeCoinbase() as fake, feed_on(coinbase(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"BTC-USD", "ETH-USD"}, what="the subscription")
        assert fake.frames(0)[0] == {"type": "subscribe", "channel": "heartbeats"}  # the first it sent
        assert fake.frames(type="subscribe", channel="ticker") == [
            {"type": "subscribe", "channel": "ticker", "product_ids": ["BTC-USD", "ETH-USD"]}]
        await fake.tickers(("BTC-USD", "43210.55"), ("ETH-USD", "2289.1"), kind="snapshot")
        await fake.tickers(("ETH-USD", "2289.07"))
        await priced(feed, "BTC", 43210.55)
        await priced(feed, "ETH-USD", 2289.07)
        assert orjson.dumps(feed.store.snapshot.rows["BTC"]).decode().startswith('["BTC",43210.55,')
        assert feed.heard["BTC"] == 1_700_000_000_000


@on_db
async def test_coinbase_a_sequence_gap_is_counted_and_logged_once(caplog):
    await sync_to_async(symbols)(("BTC-USD", ""))
    async with FakeCoinbase() as fake, feed_on(stream := coinbase(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"BTC-USD"}, what="the subscription")
        fake.lose(3)
        await fake.tickers(("BTC-USD", "43000.01"))
        fake.lose(2)
        await fake.tickers(("BTC-USD", "43000.02"))
        await priced(feed, "BTC-USD", 43000.02)
        assert stream.gaps == 5
        assert sum("lost before sequence_num" in r.message for r in caplog.records) == 1


@on_db
async def test_coinbase_silent_heartbeats_mean_a_dead_link_replaced_and_resubscribed():
    await sync_to_async(symbols)(("BTC-USD", ""))
    async with FakeCoinbase() as fake, feed_on(coinbase(fake, silence=0.5)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"BTC-USD"}, what="the subscription")
        fake.silent = True
        await eventually(lambda: len(fake.connections) == 2 and fake.subscription(1) == {"BTC-USD"},
                         what="a new connection after the silence")
        fake.silent = False
        assert fake.frames(1)[0] == {"type": "subscribe", "channel": "heartbeats"}
        await fake.tickers(("BTC-USD", "43111.5"))
        await priced(feed, "BTC-USD", 43111.5)


@on_db
async def test_coinbase_heartbeats_alone_keep_a_quiet_connection():
    await sync_to_async(symbols)(("BTC-USD", ""))
    async with FakeCoinbase(beat=0.05) as fake, feed_on(stream := coinbase(fake, silence=0.5)):
        await eventually(lambda: fake.beats >= 30, what="heartbeats for well over the silence")
        assert stream.connections == 1 and len(fake.connections) == 1 and stream.gaps == 0


@on_db
async def test_coinbase_follows_admin_changes_and_survives_bad_frames_and_disconnects():
    await sync_to_async(symbols)(("BTC-USD", ""), ("ETH-USD", ""))
    async with FakeCoinbase() as fake, feed_on(stream := coinbase(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"BTC-USD", "ETH-USD"}, what="the subscription")
        await admin_change(feed, lambda: Symbol.objects.filter(ticker="ETH-USD").delete())
        await eventually(lambda: fake.subscription(-1) == {"BTC-USD"}, what="the unsubscribe")
        assert stream.connections == 1
        for text in ["{", "[]", '{"channel":"ticker","sequence_num":"x"}', '{"type":"error","message":"nope"}',
                     '{"channel":"ticker","sequence_num":999,"timestamp":"now","events":[]}']:
            await fake.raw(text)
        await fake.tickers(("BTC-USD", "not a price"), ("BTC-USD", "43500.25"))
        await priced(feed, "BTC-USD", 43500.25)
        assert stream.malformed == 5  # the error frame is the vendor speaking, not a bad frame
        await fake.drop()
        await eventually(lambda: len(fake.connections) == 2 and fake.subscription(1) == {"BTC-USD"},
                         what="a new connection, subscribed")
        await fake.tickers(("BTC-USD", "43600"))
        await priced(feed, "BTC-USD", 43600.0)


def binance(fake: FakeBinance) -> Binance:
    return Binance(fake.url, backoff=FAST)


@on_db
async def test_binance_trades_on_lower_case_streams_reach_the_store_and_follow_the_admin():
    await sync_to_async(symbols)(("BTC", "BTCUSDT"), ("ETH", "ethusdt"))
    async with FakeBinance() as fake, feed_on(stream := binance(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"btcusdt@trade", "ethusdt@trade"}, what="the subscription")
        await fake.trade("BTCUSDT", "43210.01000000", "0.50000000", AT)
        await fake.trade("ETHUSDT", "2289.10000000", "3.25", AT)
        await fake.raw('{"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT","p":"2289.2","q":"1","T":1}}')
        btc = await priced(feed, "BTC", 43210.01)
        eth = await priced(feed, "ETH", 2289.2)
        assert (btc[VOLUME], eth[VOLUME]) == (0, 4) and feed.heard["BTC"] == AT
        await admin_change(feed, lambda: Symbol.objects.filter(ticker="ETH").update(active=False))
        await eventually(lambda: fake.subscription(-1) == {"btcusdt@trade"}, what="the unsubscribe")
        assert fake.frames(method="UNSUBSCRIBE")[0]["params"] == ["ethusdt@trade"] and stream.connections == 1


@on_db
async def test_binance_server_shutdown_reconnects_and_bad_frames_are_skipped():
    await sync_to_async(symbols)(("BTC", "BTCUSDT"))
    async with FakeBinance() as fake, feed_on(stream := binance(fake)) as feed:
        await eventually(lambda: fake.subscription(-1) == {"btcusdt@trade"}, what="the subscription")
        for text in ["}", '{"e":"trade","s":"BTCUSDT","p":"1e999999","q":"1","T":1}', '{"hello":1}']:
            await fake.raw(text)
        await fake.shutdown()
        await eventually(lambda: len(fake.connections) == 2 and fake.subscription(1) == {"btcusdt@trade"},
                         what="a new connection, subscribed")
        await fake.trade("BTCUSDT", "43999.99", "1", AT)
        await priced(feed, "BTC", 43999.99)
        assert stream.malformed == 3


def test_logging_names_the_vendor(caplog):
    caplog.set_level(logging.INFO, "ticker.feed.vendors")
    stream = Coinbase("ws://127.0.0.1:9")
    stream.unreadable(ValueError("x"), "frame")
    assert caplog.records[0].message.startswith("coinbase: skipped what it cannot read")


# feedcheck: what a person with a network runs; here against the fakes only.


def feedcheck(*args: str) -> str:
    out = StringIO()
    call_command("feedcheck", *args, stdout=out)
    return out.getvalue()


async def test_feedcheck_prints_what_arrives_per_symbol():
    async with FakeCoinbase(snapshot={"BTC-USD": "43210.55"}) as fake:
        out = await asyncio.to_thread(feedcheck, "--source", "coinbase", "--url", fake.url, "--seconds", "1",
                                      "--symbols", "BTC-USD,ETH-USD")
    assert "first update of BTC-USD: trade at 43210.55" in out
    assert "coinbase at ws://127.0.0.1:" in out and "1 connection(s), 0 unreadable" in out
    btc, eth = (line.split() for line in out.splitlines() if line.startswith(("BTC-USD ", "ETH-USD ")))
    assert btc[:5] == ["BTC-USD", "BTC-USD", "1", "0", "43210.55"] and eth[2:5] == ["0", "0", "-"]


async def test_feedcheck_says_when_nothing_arrived_or_the_vendor_refused(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", ALPACA_KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", ALPACA_SECRET)
    async with FakeCoinbase() as fake:
        with pytest.raises(CommandError, match=r"nothing arrived from coinbase in 0\.2 s"):
            await asyncio.to_thread(feedcheck, "--source", "coinbase", "--url", fake.url, "--seconds", "0.2",
                                    "--symbols", "BTC-USD")
    async with FakeAlpaca(secret="another") as fake:
        with pytest.raises(CommandError, match="alpaca error 402: auth failed"):
            await asyncio.to_thread(feedcheck, "--source", "alpaca", "--url", fake.url, "--symbols", "AAPL")
    with pytest.raises(CommandError, match="--seconds must be more than 0"):
        feedcheck("--source", "coinbase", "--seconds", "0")


@on_db
async def test_a_subscription_that_cannot_be_sent_closes_the_connection_and_a_new_one_tries_again(caplog):
    await sync_to_async(symbols)(("BTC-USD", ""))
    async with FakeCoinbase() as fake:
        stream = coinbase(fake)
        failures = iter([RuntimeError("a bug in the adapter")])
        real = stream.subscribe

        def flaky(names):
            if (failure := next(failures, None)) is not None:
                raise failure
            return real(names)

        stream.subscribe = flaky
        async with feed_on(stream):
            await eventually(lambda: len(fake.connections) == 2 and fake.subscription(1) == {"BTC-USD"},
                             what="a new connection, subscribed")
        assert "could not send the subscriptions" in caplog.text
