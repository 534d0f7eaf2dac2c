"""The hub: fan-out, subscriptions, resync on gaps, resume, held clients, conflation.

The hub is driven directly: its events come from a queue, its snapshots from a memory store,
its steady clock from the test (``FakeClock``): time moves when a test says so, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.helpers.waiting import eventually
from ticker.fanout.delivery import Outbox, State
from ticker.fanout.holds import ACK_TIMEOUT
from ticker.fanout.hub import Hub, TooManyKeys
from ticker.fanout.pacer import QUEUED_SECONDS
from ticker.fanout.types import Batch, Catalog, Drop, Event, Rejoined
from ticker.layer.store import MemoryStore
from ticker.protocol import MAX_SYMBOLS, QuoteCodec

SYMBOLS = [{"s": s, "name": s, "paused": False} for s in ("AAA", "BBB", "CCC")]


def catalog(entries) -> Catalog:
    return Catalog(frozenset(e["s"] for e in entries), entries)


def row(sym, last, ts=None):
    """A full row published now (or at ``ts``, epoch ms)."""
    ts = int(time.time() * 1000) if ts is None else ts
    return [sym, last, 10.0, 10.0, max(10.0, last), min(10.0, last), 100, ts]


class FakeClock:
    """The hub's clock: its steady time moves only when a test moves it; its wall time is the real
    one, as are the times of the rows the tests publish."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    time = staticmethod(time.time)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Feed:
    """Publishes like the real feed: store first, then the event."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def events(self):
        while True:
            yield await self.queue.get()

    async def publish(self, epoch, seq, rows, removed=(), ts_ms=None):
        await self.store.save(epoch, seq, rows, removed)
        ts_ms = max(r[7] for r in rows) if ts_ms is None and rows else ts_ms or int(time.time() * 1000)
        await self.queue.put(Batch(epoch, seq, rows, removed, ts_ms))


class Recorder:
    """A client that records every frame it is sent, decoded."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.frames: list[dict] = []
        self.client = hub.connect(self.send)

    async def send(self, message: dict) -> None:
        assert message["type"] == "websocket.send"
        self.frames.append(orjson.loads(message["text"]))

    def of(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["t"] == kind]


class FlowControlled(Recorder):
    """A client whose server suspends a send while its buffer is full, as uvicorn does."""

    def __init__(self, hub: Hub):
        self.writable = asyncio.Event()
        self.writable.set()
        super().__init__(hub)

    async def send(self, message: dict) -> None:
        await self.writable.wait()
        await super().send(message)


@pytest.fixture
async def setup():
    store = MemoryStore()
    await store.save("e1", 0, [row("AAA", 10.0), row("BBB", 10.0), row("CCC", 10.0)])
    feed = Feed(store)
    state = {"catalog": catalog(SYMBOLS)}

    async def load_catalog():
        return state["catalog"]

    hub = Hub(QuoteCodec("node-1"), store.load, load_catalog, feed.events, max_keys=MAX_SYMBOLS, clock=FakeClock())
    await hub.start()
    await feed.queue.put(Rejoined())
    await asyncio.wait_for(hub.synced.wait(), 2)
    hub.state = state  # lets a test change what the database says
    yield hub, feed
    await hub.stop()


def parked(hub: Hub) -> set:
    return set(hub.holds.parked)


async def settle(hub: Hub, seq: int) -> None:
    await eventually(lambda: hub.replica.seq >= seq, 2, 0.002, f"seq {seq}")
    await asyncio.sleep(0)


async def test_whole_board_clients_get_every_batch_in_order(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    for seq in range(1, 6):
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq)])
    await settle(hub, 5)
    assert [f["seq"] for f in rec.of("q")] == [1, 2, 3, 4, 5]
    assert [r[:3] for r in rec.of("q")[-1]["q"]] == [["AAA", 15.0, 100]]


async def test_every_frame_starts_with_hello(setup):
    hub, _ = setup
    rec = Recorder(hub)
    assert rec.frames[0]["t"] == "hello" and rec.frames[0]["limits"]["ack_ms"] > 0


async def test_hello_says_where_the_prices_come_from_as_the_feeds_batches_say(setup):
    hub, feed = setup
    assert hub.source == ""  # no batch has said yet
    await feed.queue.put(Batch("e1", 1, [row("AAA", 11.0)], (), int(time.time() * 1000), source="replay at 10×"))
    await eventually(lambda: hub.source, what="the batch")
    assert hub.source == "replay at 10×" and Recorder(hub).frames[0]["source"] == "replay at 10×"


async def test_a_client_there_before_the_feeds_first_batch_hears_its_source_in_a_sym(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    assert rec.frames[0]["source"] == ""  # a cold start: no batch has said yet
    now = int(time.time() * 1000)
    await feed.queue.put(Batch("e1", 1, [row("AAA", 11.0)], (), now, source="Alpaca (iex)"))
    await settle(hub, 1)
    assert [f["t"] for f in rec.frames] == ["hello", "snap", "sym", "q"]
    assert rec.of("sym")[0]["source"] == "Alpaca (iex)" and rec.of("sym")[0]["symbols"] == SYMBOLS
    await feed.queue.put(Batch("e1", 2, [row("AAA", 12.0)], (), now, source="Alpaca (iex)"))
    await settle(hub, 2)
    assert len(rec.of("sym")) == 1  # the same source: nothing more to say
    await feed.queue.put(Batch("e2", 1, [row("AAA", 13.0)], (), now, source="Coinbase Advanced Trade"))
    await eventually(lambda: len(rec.of("sym")) == 2, 2, what="a new feed run's source")
    assert rec.of("sym")[1]["source"] == "Coinbase Advanced Trade"


async def test_watchlist_clients_get_only_their_symbols_and_nothing_when_they_did_not_change(setup):
    hub, feed = setup
    rec = Recorder(hub)
    assert hub.subscribe(rec.client, ["BBB"]) == []
    assert [r[0] for r in rec.of("snap")[-1]["q"]] == ["BBB"]
    await feed.publish("e1", 1, [row("AAA", 11.0)])
    await feed.publish("e1", 2, [row("AAA", 12.0), row("BBB", 9.0)])
    await settle(hub, 2)
    assert [(f["seq"], [r[:3] for r in f["q"]]) for f in rec.of("q")] == [(2, [["BBB", 9.0, 100]])]


async def test_clients_with_the_same_symbols_share_one_frame(setup):
    hub, feed = setup
    a, b = Recorder(hub), Recorder(hub)
    hub.subscribe(a.client, ["AAA", "BBB"])
    hub.subscribe(b.client, ["BBB", "AAA"])
    assert len([k for k in hub.registry.groups if k]) == 1
    await feed.publish("e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    assert a.frames[-1] == b.frames[-1]


async def test_unknown_symbols_are_reported_and_known_ones_still_subscribed(setup):
    hub, _ = setup
    rec = Recorder(hub)
    assert hub.subscribe(rec.client, ["AAA", "ZZZ"]) == ["ZZZ"]
    assert rec.client.selection == frozenset({"AAA"})


async def test_too_many_symbols_leaves_the_subscription_unchanged(setup):
    hub, _ = setup
    hub.replica.set_catalog(catalog([{"s": f"S{i}"} for i in range(MAX_SYMBOLS + 5)]))
    rec = Recorder(hub)
    hub.subscribe(rec.client, [f"S{i}" for i in range(MAX_SYMBOLS)])
    with pytest.raises(TooManyKeys):
        hub.subscribe(rec.client, ["S100"])
    assert len(rec.client.selection) == MAX_SYMBOLS


async def test_unsubscribe_from_the_whole_board_keeps_the_others(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    hub.unsubscribe(rec.client, ["AAA"])
    assert rec.client.selection == frozenset({"BBB", "CCC"})
    hub.unsubscribe(rec.client, None)
    await feed.publish("e1", 1, [row("BBB", 11.0)])
    await settle(hub, 1)
    assert rec.of("q") == []


async def test_a_gap_in_seq_makes_the_hub_resync_and_snapshot_everyone(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    await feed.store.save("e1", 1, [row("AAA", 11.0)])  # batch 1 never reaches the hub
    await feed.publish("e1", 2, [row("BBB", 12.0)])
    await settle(hub, 2)
    snaps = rec.of("snap")
    assert snaps[-1]["seq"] == 2 and "since" not in snaps[-1]  # a resync: everything, not a merge
    assert {r[0]: r[1] for r in snaps[-1]["q"]} == {"AAA": 11.0, "BBB": 12.0, "CCC": 10.0}


async def test_a_new_epoch_replaces_the_state(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    await feed.store.save("e2", 0, [row("AAA", 50.0)])
    await feed.publish("e2", 1, [row("AAA", 51.0)])
    await settle(hub, 1)
    assert hub.replica.epoch == "e2" and set(hub.replica.rows) == {"AAA"}
    assert rec.of("snap")[-1]["q"][0][1] == 51.0


async def test_resume_in_the_same_epoch_sends_only_what_changed(setup):
    hub, feed = setup
    for seq, (sym, last) in enumerate([("AAA", 11.0), ("BBB", 12.0), ("AAA", 13.0)], start=1):
        await feed.publish("e1", seq, [row(sym, last)])
    await settle(hub, 3)
    rec = Recorder(hub)
    hub.resume(rec.client, "e1", 1, None)
    snap = rec.of("snap")[-1]
    assert (snap["epoch"], snap["seq"], snap["since"]) == ("e1", 3, 1)  # batches 2 and 3, merged
    assert [r[:7] for r in snap["q"]] == [row("AAA", 13.0)[:7], row("BBB", 12.0)[:7]]
    hub.resume(rec.client, "e1", 3, None)
    assert rec.of("snap")[-1]["q"] == []  # nothing missed


async def test_resume_from_another_epoch_or_an_unknown_seq_gets_a_full_snapshot(setup):
    hub, _ = setup
    rec = Recorder(hub)
    hub.resume(rec.client, "old", 1, None)
    assert len(rec.of("snap")[-1]["q"]) == 3 and "since" not in rec.of("snap")[-1]
    hub.resume(rec.client, "e1", 99, ["AAA", "BBB"])
    assert len(rec.of("snap")[-1]["q"]) == 3  # the whole board it already had, and nothing lost
    assert "since" not in rec.of("snap")[-1]


async def test_symbol_changes_go_to_every_client(setup):
    hub, feed = setup
    rec = Recorder(hub)
    await feed.queue.put(catalog([{"s": "NEW"}]))
    await eventually(lambda: rec.of("sym"), 2)
    assert rec.of("sym") == [{"t": "sym", "symbols": [{"s": "NEW"}], "market": {"state": "open", "reason": ""},
                             "source": ""}]
    assert hub.replica.catalog.keys == {"NEW"}


async def test_a_market_halt_goes_to_every_client_and_to_a_held_one_on_catch_up(setup):
    hub, feed = setup
    live = Recorder(hub)
    stuck = await held_after_batch_1(hub, feed)
    halted = Catalog(frozenset(s["s"] for s in SYMBOLS), SYMBOLS, {"state": "halted", "reason": "circuit breaker"})
    hub.state["catalog"] = halted
    await feed.queue.put(halted)
    await eventually(lambda: live.of("sym"), 2)
    assert live.of("sym")[-1]["market"] == {"state": "halted", "reason": "circuit breaker"}
    assert stuck.of("sym") == []  # held: nothing sent
    stuck.writable.set()
    await eventually(lambda: stuck.of("sym"), 2)
    assert stuck.of("sym")[-1]["market"]["state"] == "halted"
    assert Recorder(hub).frames[0]["market"]["reason"] == "circuit breaker"  # and in every new hello


async def test_leave_removes_the_client_and_empty_groups(setup):
    hub, _ = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, ["AAA"])
    hub.leave(rec.client)
    assert hub.registry.groups == {} and hub.client_count == 0 and rec.client.state is State.CLOSING


async def test_a_failing_client_does_not_stop_the_others(setup):
    hub, feed = setup

    async def broken(message):
        raise ConnectionResetError

    bad = hub.connect(broken)
    hub.subscribe(bad, None)
    good = Recorder(hub)
    hub.subscribe(good.client, None)
    await feed.publish("e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    assert [f["seq"] for f in good.of("q")] == [1]


async def test_a_client_that_stops_acknowledging_is_held_then_resynced(setup):
    hub, feed = setup
    slow, fast, silent = Recorder(hub), Recorder(hub), Recorder(hub)
    for rec in (slow, fast, silent):
        hub.subscribe(rec.client, None)
    hub.ack(slow.client, 0)
    hub.ack(fast.client, 0)
    await feed.publish("e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    sent_at = hub.registry.groups[None].log[-1][1]
    hub.ack(fast.client, 1)
    hub.hold_laggards(sent_at + ACK_TIMEOUT / 2)
    assert parked(hub) == set()  # not overdue yet
    hub.hold_laggards(sent_at + ACK_TIMEOUT + 0.1)
    assert parked(hub) == {slow.client} and slow.client.state is State.HELD_ACKS  # `silent` never acks
    await feed.publish("e1", 2, [row("AAA", 12.0), row("BBB", 12.0)])
    await settle(hub, 2)
    assert [f["seq"] for f in slow.of("q")] == [1]  # nothing more was sent to it
    assert [f["seq"] for f in fast.of("q")] == [1, 2] == [f["seq"] for f in silent.of("q")]
    hub.ack(slow.client, 0)  # still behind what it was sent
    hub.drain(hub.now())
    assert slow.of("snap")[-1]["seq"] == 0 and parked(hub) == {slow.client}
    hub.ack(slow.client, 1)
    hub.drain(hub.now())
    snap = slow.of("snap")[-1]
    assert snap["seq"] == 2 and [r[:2] for r in snap["q"]] == [["AAA", 12.0], ["BBB", 12.0]]  # only what changed
    assert parked(hub) == set()
    await feed.publish("e1", 3, [row("AAA", 13.0)])
    await settle(hub, 3)
    assert [f["seq"] for f in slow.of("q")] == [1, 3]
    assert hub.client_count == 3


@pytest.mark.parametrize("batch_ms", [50, 20])
async def test_acks_are_judged_by_age_whatever_the_batch_rate(setup, batch_ms):
    """More batches than any fixed-size log holds fit in ACK_TIMEOUT at 50 ms or 20 ms."""
    hub, feed = setup
    slow = Recorder(hub)
    hub.subscribe(slow.client, None)
    hub.ack(slow.client, 0)
    batches = int(ACK_TIMEOUT * 1000 / batch_ms) + 20
    for seq in range(1, batches + 1):
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq / 100)])
    await settle(hub, batches)
    group = hub.registry.groups[None]
    first_sent = group.log[0][1]
    for i, (seq, _) in enumerate(group.log):  # spread the sends over the batch interval
        group.log[i] = (seq, first_sent + i * batch_ms / 1000)
    hub.hold_laggards(first_sent + ACK_TIMEOUT + 0.001)
    assert parked(hub) == {slow.client}


async def test_a_quiet_watchlist_is_not_mistaken_for_a_slow_client(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, ["CCC"])
    hub.ack(rec.client, 0)
    for seq in range(1, 4):
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq)])  # CCC never changes
    await settle(hub, 3)
    hub.hold_laggards(hub.now() + 60)
    assert parked(hub) == set()


async def test_a_held_client_that_leaves_is_forgotten(setup):
    hub, feed = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    hub.ack(rec.client, 0)
    await feed.publish("e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    hub.hold_laggards(hub.now() + ACK_TIMEOUT + 1)
    assert parked(hub) == {rec.client}
    hub.leave(rec.client)
    assert parked(hub) == set() and hub.client_count == 0


async def test_a_send_the_server_suspends_never_holds_up_the_others(setup):
    hub, feed = setup
    stuck, other = FlowControlled(hub), Recorder(hub)
    for rec in (stuck, other):
        hub.subscribe(rec.client, None)
    stuck.writable.clear()  # its buffer is full
    for seq in range(1, 4):
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq)])
    await settle(hub, 3)
    assert [f["seq"] for f in other.of("q")] == [1, 2, 3]
    assert parked(hub) == {stuck.client} and stuck.client.state is State.HELD_SEND
    stuck.writable.set()  # it drained
    await eventually(lambda: stuck.of("snap")[-1]["seq"] == 3, 2)
    assert [f["seq"] for f in stuck.of("q")] == [1]  # the send that waited, then a snap of what it missed
    assert [r[0] for r in stuck.of("snap")[-1]["q"]] == ["AAA"] and stuck.of("snap")[-1]["since"] == 1
    await feed.publish("e1", 4, [row("AAA", 14.0)])
    await settle(hub, 4)
    assert [f["seq"] for f in stuck.of("q")] == [1, 4] and parked(hub) == set()


async def held_after_batch_1(hub: Hub, feed: Feed) -> FlowControlled:
    """A whole-board client whose server suspends its send of batch 1: held."""
    stuck = FlowControlled(hub)
    hub.subscribe(stuck.client, None)
    stuck.writable.clear()
    await feed.publish("e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    return stuck


async def test_a_held_client_gets_the_symbol_changes_it_missed_then_its_snap(setup):
    hub, feed = setup
    stuck = await held_after_batch_1(hub, feed)
    assert parked(hub) == {stuck.client}
    # An operator adds DDD and deletes CCC while the client is held.
    changed = catalog([{"s": "AAA"}, {"s": "BBB"}, {"s": "DDD"}])
    hub.state["catalog"] = changed
    await feed.queue.put(changed)
    await eventually(lambda: hub.replica.catalog == changed, 2)
    await feed.publish("e1", 2, [row("DDD", 5.0)], removed=["CCC"])
    await settle(hub, 2)
    stuck.writable.set()
    await eventually(lambda: stuck.of("snap") and stuck.of("snap")[-1]["seq"] == 2, 2)
    kinds = [f["t"] for f in stuck.frames]
    assert kinds[-2:] == ["sym", "snap"]  # the list first, so the page knows the rows that follow
    assert [s["s"] for s in stuck.of("sym")[-1]["symbols"]] == ["AAA", "BBB", "DDD"]
    assert [r[0] for r in stuck.of("snap")[-1]["q"]] == ["DDD"]


async def test_a_client_that_leaves_while_a_send_waits_is_forgotten(setup):
    hub, feed = setup
    stuck = await held_after_batch_1(hub, feed)
    task = stuck.client.stall
    assert task is not None
    hub.leave(stuck.client)
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and parked(hub) == set() and hub.client_count == 0


def stale() -> int:
    return int(time.time() * 1000) - 2000  # two seconds ago


async def test_batches_late_from_upstream_are_sent_as_they_are(setup):
    """Late because the feed or the layer was slow: they arrive apart, and the hub can afford a
    fan-out each, so each goes out as it is (merging would not make them fresher)."""
    hub, feed = setup
    board = Recorder(hub)
    hub.subscribe(board.client, None)
    for seq in range(1, 6):
        hub.clock.advance(QUEUED_SECONDS * 2)  # each comes a while after the last, as the feed makes it
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq, stale())])
        await settle(hub, seq)
    assert hub.stats.lag_ms > 1000 and hub.stats.conflated == 0
    assert [f["seq"] for f in board.of("q")] == [1, 2, 3, 4, 5] and len(board.of("snap")) == 1


async def test_a_backlog_queued_behind_a_pause_goes_out_as_one_merge(setup):
    """A pause of the process (a garbage collection, a burst of handshakes) leaves late batches
    queued: the first goes out, the ones queued behind it are folded into one merge."""
    hub, feed = setup
    board = Recorder(hub)
    hub.subscribe(board.client, None)
    hub.clock.advance(QUEUED_SECONDS * 2)  # idle a while; then the pause, and its backlog:
    for seq in range(1, 6):  # all in the queue at once, all two seconds old
        other = ("BBB", "CCC")[seq % 2]
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq, stale()), row(other, 9.0 + seq, stale())])
    await settle(hub, 5)
    assert [f["seq"] for f in board.of("q")] == [1] and hub.stats.conflated == 4
    assert board.of("snap")[-1]["seq"] == 0  # held back while the backlog may still be arriving
    hub.clock.advance(QUEUED_SECONDS * 2)
    await eventually(lambda: board.of("snap")[-1]["seq"] == 5, 2)  # then flushed
    snap = board.of("snap")[-1]
    assert snap["since"] == 1 and {r[0]: r[1] for r in snap["q"]} == {"AAA": 15.0, "BBB": 13.0, "CCC": 14.0}
    await feed.publish("e1", 6, [row("AAA", 16.0)])  # on time again: plain batches
    await settle(hub, 6)
    assert board.of("q")[-1]["seq"] == 6


class Heavy(Recorder):
    """A client whose every send takes the process 50 ms: the hub's fan-outs become costly."""

    async def send(self, message: dict) -> None:
        self.hub.clock.advance(0.05)  # the cost of a fan-out too big for the process
        await super().send(message)


async def test_a_hub_that_cannot_afford_every_fan_out_merges_the_batches_in_between(setup):
    hub, feed = setup
    board, watch, heavy = Recorder(hub), Recorder(hub), Heavy(hub)
    hub.subscribe(board.client, None)
    hub.subscribe(watch.client, ["BBB"])
    hub.subscribe(heavy.client, ["AAA", "BBB"])
    now = int(time.time() * 1000)
    for seq in range(1, 8):  # a second apart: every one goes out, and the hub learns their cost
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq, now + 1000 * seq)])
        await settle(hub, seq)
    assert hub.pacer.spacing > 0.05  # about 50 ms a fan-out, at most 70 % of the time
    made = now + 7000
    await feed.publish("e1", 8, [row("AAA", 18.0, made + 20)])  # made too soon after batch 7
    await feed.publish("e1", 9, [row("AAA", 19.0, made + 40), row("BBB", 12.0, made + 40)])
    await settle(hub, 9)
    assert [f["seq"] for f in board.of("q")] == list(range(1, 8)) and hub.stats.conflated == 2
    hub.clock.advance(1.0)
    await eventually(lambda: board.of("snap")[-1]["seq"] == 9, 3)  # flushed once it can afford it
    snap = board.of("snap")[-1]
    assert snap["since"] == 7 and {r[0]: r[1] for r in snap["q"]} == {"AAA": 19.0, "BBB": 12.0}
    assert watch.of("snap")[-1]["since"] == 7 and [r[0] for r in watch.of("snap")[-1]["q"]] == ["BBB"]
    assert watch.of("q") == []
    hub.leave(heavy.client)  # cheap again: every batch goes out as it is once the cost has decayed
    for seq in range(10, 22):
        await feed.publish("e1", seq, [row("CCC", 10.0 + seq, made + 40 * seq)])
        await settle(hub, seq)
    assert [f["seq"] for f in board.of("q")][-3:] == [19, 20, 21] and hub.pacer.spacing < 0.04


async def test_a_batch_after_one_held_back_goes_out_as_a_merge_even_when_it_changed_the_same_keys(setup):
    """Batch 8 is held back; batch 9 changes its key and one more and is not too soon: it must go
    out as a merge since 7, never as a ``q`` 9 right after ``q`` 7 (a seq jump)."""
    hub, feed = setup
    board, heavy = Recorder(hub), Heavy(hub)
    hub.subscribe(board.client, None)
    hub.subscribe(heavy.client, ["AAA"])
    now = int(time.time() * 1000)
    for seq in range(1, 8):  # a second apart: every one goes out, and the hub learns their cost
        await feed.publish("e1", seq, [row("AAA", 10.0 + seq, now + 1000 * seq)])
        await settle(hub, seq)
    made = now + 7000
    await feed.publish("e1", 8, [row("AAA", 18.0, made + 1)])  # made too soon after batch 7: held back
    await settle(hub, 8)
    assert hub.stats.conflated == 1
    await feed.publish("e1", 9, [row("AAA", 19.0, made + 1000), row("BBB", 12.0, made + 1000)])  # not too soon
    await settle(hub, 9)  # sent as it arrived: not too soon
    assert [f["seq"] for f in board.of("q")] == list(range(1, 8))
    snap = board.of("snap")[-1]
    assert snap["since"] == 7 and {r[0]: r[1] for r in snap["q"]} == {"AAA": 19.0, "BBB": 12.0}


def test_the_outbox_hands_over_each_change_once():
    outbox = Outbox()
    outbox.put("a")  # type: ignore[arg-type]
    outbox.put("b")  # type: ignore[arg-type]
    assert outbox.take() == ["a", "b"] and outbox.take() == [] and not outbox.ready.is_set()


async def test_a_client_held_past_the_limit_is_dropped_and_forgotten(setup):
    hub, feed = setup
    dropped: list[Drop] = []
    stuck = await held_after_batch_1(hub, feed)
    hub.drops[stuck.client] = dropped.append  # what the consumer gives connect()
    assert parked(hub) == {stuck.client}
    since, limit = hub.holds.parked[stuck.client].since, hub.holds.hold_limit
    hub.drop_stuck(since + limit / 2)
    assert dropped == [] and hub.client_count == 1
    hub.drop_stuck(since + limit + 0.1)
    assert dropped == [Drop.TOO_SLOW] and hub.client_count == 0 and hub.drops == {}
    assert stuck.client.state is State.CLOSING


async def test_a_restart_sends_every_client_away_and_each_that_connects_after(setup):
    """``restart`` (the drain on SIGTERM) lets every client go, held or live, each told why; one
    that connects afterwards is sent away on the next loop turn, once its consumer holds it."""
    hub, feed = setup
    told: list[tuple[str, Drop]] = []
    stuck = await held_after_batch_1(hub, feed)
    hub.drops[stuck.client] = lambda why: told.append(("held", why))
    async def send(message: dict) -> None:
        pass

    live = hub.connect(send, lambda why: told.append(("live", why)))
    hub.subscribe(live, None)
    assert hub.restart() == 2
    assert sorted(told) == [("held", Drop.RESTART), ("live", Drop.RESTART)]
    assert hub.client_count == 0 and hub.drops == {} and live.state is State.CLOSING
    late = hub.connect(send, lambda why: told.append(("late", why)))
    assert hub.client_count == 1  # not yet: its consumer is still being handed the client
    await asyncio.sleep(0)
    assert told[-1] == ("late", Drop.RESTART) and hub.client_count == 0 and late.state is State.CLOSING
