"""Stale symbols: the pure judge with a fake clock, and the hub that tells its clients.

Times are made up (epoch ms around ``T``); the judge and the hub's ``judge_stale`` are handed
``now``, so nothing waits for a mark to pass.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import orjson
import pytest
from rich.console import Console

from tests.test_hub import SYMBOLS, FakeClock, Feed, Recorder, catalog, row, settle
from ticker.clients.watch import Watcher, WatchOptions
from ticker.fanout.hub import Hub
from ticker.fanout.staleness import Staleness
from ticker.fanout.types import Batch, Catalog, Rejoined
from ticker.layer.store import MemoryStore
from ticker.protocol import MAX_SYMBOLS, QuoteCodec, encode_stale

T = 1_796_000_000_000
MARK = 15_000


def judge(stamps: dict[str, int], now: int, mark: int = MARK) -> tuple[bool, dict[str, int]]:
    staleness = Staleness()
    staleness.mark_ms = mark
    changed = staleness.judge(stamps.items(), now)
    return changed, staleness.since


def test_a_key_is_stale_once_its_newest_row_is_older_than_the_mark():
    stamps = {"AAA": T, "BBB": T + 10_000}
    assert judge(stamps, T + MARK) == (False, {})  # exactly the mark: still live
    assert judge(stamps, T + MARK + 1) == (True, {"AAA": T})
    assert judge(stamps, T + 10_000 + MARK + 1) == (True, {"AAA": T, "BBB": T + 10_000})


def test_while_the_source_is_down_every_key_is_stale_whatever_its_time():
    staleness = Staleness()
    staleness.mark_ms, staleness.down = MARK, True
    assert staleness.judge([("AAA", T), ("BBB", T + 10_000)], T + 10_000)
    assert staleness.since == {"AAA": T, "BBB": T + 10_000}
    staleness.down = False
    assert staleness.judge([("AAA", T), ("BBB", T + 10_000)], T + 10_000)
    assert staleness.since == {}


def test_without_a_mark_nothing_is_stale():
    assert judge({"AAA": 0}, T, mark=0) == (False, {})


def test_judge_says_when_the_set_changes_and_a_key_that_trades_again_is_live():
    staleness = Staleness()
    staleness.mark_ms = MARK
    now = T + MARK + 1
    assert staleness.judge([("AAA", T), ("BBB", now)], now)
    assert not staleness.judge([("AAA", T), ("BBB", now)], now + 100)  # the same: no news
    assert staleness.judge([("AAA", now), ("BBB", now)], now + 200)  # AAA traded again
    assert staleness.since == {}
    assert staleness.judge([("AAA", T), ("BBB", T)], now)
    assert staleness.of(frozenset({"BBB"})) == {"BBB": T}
    assert staleness.of(frozenset({"CCC"})) == {}
    assert staleness.of(None) == {"AAA": T, "BBB": T}


@pytest.fixture
async def hub():
    store = MemoryStore()
    await store.save("e1", 0, [row("AAA", 10.0, T), row("BBB", 10.0, T), row("CCC", 10.0, T)])
    feed = Feed(store)
    state = {"catalog": catalog(SYMBOLS)}

    async def load_catalog():
        return state["catalog"]

    codec = QuoteCodec("node-1")
    hub = Hub(codec, store.load, load_catalog, feed.events, max_keys=MAX_SYMBOLS, clock=FakeClock(), marks=codec)
    await hub.start()
    await feed.queue.put(Rejoined())
    await asyncio.wait_for(hub.synced.wait(), 2)
    await feed.queue.put(Batch("e1", 1, [row("AAA", 11.0, T + 20_000)], (), T + 20_000, MARK, 3))
    await settle(hub, 1)
    hub.feed = feed
    yield hub
    await hub.stop()


async def test_the_hub_takes_the_feeds_mark_and_gaps_from_its_batches(hub):
    assert hub.staleness.mark_ms == MARK
    assert hub.stats.feed_gaps == 3


async def test_clients_are_told_the_stale_symbols_they_follow_when_the_set_changes(hub):
    whole, watch_a, watch_b = Recorder(hub), Recorder(hub), Recorder(hub)
    hub.subscribe(whole.client, None)
    hub.subscribe(watch_a.client, ["AAA"])
    hub.subscribe(watch_b.client, ["BBB"])
    hub.judge_stale(T + MARK + 1)  # BBB and CCC: 15 s and a bit without a price; AAA is newer
    hub.judge_stale(T + MARK + 2)  # nothing changed: nothing sent
    await asyncio.sleep(0)
    assert whole.of("stale") == [{"t": "stale", "s": {"BBB": T, "CCC": T}}]
    assert watch_b.of("stale") == [{"t": "stale", "s": {"BBB": T}}]
    assert watch_a.of("stale") == []  # its part did not change
    await hub.feed.publish("e1", 2, [row("BBB", 12.0, T + MARK + 100)])
    await settle(hub, 2)
    hub.judge_stale(T + MARK + 200)
    await asyncio.sleep(0)
    assert whole.of("stale")[-1] == {"t": "stale", "s": {"CCC": T}}
    assert watch_b.of("stale")[-1] == {"t": "stale", "s": {}}  # live again


async def test_a_new_subscriber_gets_the_stale_symbols_after_its_snap(hub):
    hub.judge_stale(T + MARK + 1)
    rec = Recorder(hub)
    hub.subscribe(rec.client, ["CCC", "AAA"])
    await asyncio.sleep(0)
    assert [f["t"] for f in rec.frames] == ["hello", "snap", "stale"]
    assert rec.frames[-1]["s"] == {"CCC": T}
    live = Recorder(hub)
    hub.subscribe(live.client, ["AAA"])
    await asyncio.sleep(0)
    assert [f["t"] for f in live.frames] == ["hello", "snap"]  # nothing stale: nothing more


async def test_a_source_whose_link_is_down_makes_every_key_stale_at_once_but_the_quiet_ones(hub):
    keys = frozenset(("AAA", "BBB", "CCC"))
    hub.on_catalog(Catalog(keys, SYMBOLS, {"state": "open"}, frozenset({"CCC"})))  # CCC paused
    whole = Recorder(hub)
    hub.subscribe(whole.client, None)
    now = int(time.time() * 1000)
    await hub.feed.queue.put(Batch("e1", 2, [row("AAA", 11.5, now)], (), now, MARK, down=True))
    await settle(hub, 2)
    # AAA's row is fresh, yet stale: its source is cut off. Judged on the batch, not at a sweep.
    assert whole.of("stale") == [{"t": "stale", "s": {"AAA": now, "BBB": T}}]
    assert hub.stats.source_down
    await hub.feed.queue.put(Batch("e1", 3, [], (), now, MARK))  # the link is back
    await settle(hub, 3)
    assert not hub.stats.source_down
    assert whole.of("stale")[-1] == {"t": "stale", "s": {"BBB": T}}  # the mark again: AAA is within it


async def test_paused_symbols_and_a_halted_market_are_never_stale(hub):
    keys = frozenset(("AAA", "BBB", "CCC"))
    hub.on_catalog(Catalog(keys, SYMBOLS, {"state": "open"}, frozenset({"CCC"})))
    hub.judge_stale(T + MARK + 1)
    assert hub.stale(None) == {"BBB": T}
    hub.on_catalog(Catalog(keys, SYMBOLS, {"state": "halted"}, keys))
    hub.judge_stale(T + MARK + 2)
    assert hub.stale(None) == {}


def test_the_stale_frame_is_the_whole_set():
    assert orjson.loads(encode_stale({"AAA": T})) == {"t": "stale", "s": {"AAA": T}}
    assert orjson.loads(encode_stale({})) == {"t": "stale", "s": {}}


def test_watch_holds_the_stale_symbols_and_shows_since_when():
    watcher = Watcher(WatchOptions())
    state = watcher.state
    state.apply({"t": "hello", "epoch": "e1", "seq": 0,
                 "symbols": [{"s": "AAA", "name": "A"}, {"s": "BBB", "name": "B"}]})
    state.apply({"t": "snap", "epoch": "e1", "seq": 1, "q": [row("AAA", 11.0, T), row("BBB", 12.0, T)]})
    state.apply({"t": "stale", "s": {"AAA": T}})
    assert state.stale == {"AAA": T}
    console = Console(width=160, record=True)
    console.print(watcher.render())
    text = console.export_text().splitlines()
    lines = {sym: next(line for line in text if f" {sym} " in line) for sym in ("AAA", "BBB")}
    assert f"stale since {datetime.fromtimestamp(T / 1000):%H:%M:%S}" in lines["AAA"]
    assert "stale" not in lines["BBB"]
    state.apply({"t": "snap", "epoch": "e1", "seq": 2, "q": [], "stale": {}})  # a polled snap says it too
    assert state.stale == {}
    state.apply({"t": "stale", "s": {"BBB": T}})
    state.apply({"t": "hello", "epoch": "e1", "seq": 2, "symbols": []})
    assert state.stale == {}  # a new connection: its server says again
