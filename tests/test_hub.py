"""The hub: fan-out, subscriptions, resync on gaps, resume — on the in-memory layer."""

import asyncio
import time

import orjson
import pytest
from channels.layers import InMemoryChannelLayer

from ticker import bus
from ticker.delivery import ACK_TIMEOUT, Client
from ticker.hub import Hub
from ticker.protocol import MAX_SYMBOLS, ProtocolError
from ticker.store import MemoryStore

SYMBOLS = [{"s": s, "name": s, "paused": False} for s in ("AAA", "BBB", "CCC")]


def row(sym, last, ts=None):
    """A full row published now (or at ``ts``, epoch ms)."""
    ts = int(time.time() * 1000) if ts is None else ts
    return [sym, last, 10.0, 10.0, max(10.0, last), min(10.0, last), 100, ts]


class Recorder:
    """A client that records every frame it is sent, decoded."""

    def __init__(self, hub: Hub):
        self.frames: list[dict] = []
        self.client = Client(self.send)
        hub.join(self.client)

    async def send(self, message: dict) -> None:
        assert message["type"] == "websocket.send"
        self.frames.append(orjson.loads(message["text"]))

    def of(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["t"] == kind]


@pytest.fixture
async def setup():
    layer, store = InMemoryChannelLayer(), MemoryStore()
    await store.save("e1", 0, [row("AAA", 10.0), row("BBB", 10.0), row("CCC", 10.0)])
    async def symbols():
        return SYMBOLS

    hub = Hub(store, "node-1", bus.Listener([bus.QUOTES_GROUP, bus.CONTROL_GROUP], layer), symbols)
    hub.set_symbols(SYMBOLS)
    hub.listen()
    await asyncio.wait_for(hub.synced.wait(), 2)
    yield hub, layer, store
    await hub.stop()


async def publish(layer, store, epoch, seq, rows, removed=()):
    await store.save(epoch, seq, rows, removed)
    await layer.group_send(bus.QUOTES_GROUP, bus.batch_message(epoch, seq, rows, removed))


async def settle(hub: Hub, seq: int) -> None:
    for _ in range(200):
        if hub.seq >= seq:
            await asyncio.sleep(0)
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"hub stuck at seq {hub.seq}, wanted {seq}")


async def test_whole_board_clients_get_every_batch_in_order(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    for seq in range(1, 6):
        await publish(layer, store, "e1", seq, [row("AAA", 10.0 + seq)])
    await settle(hub, 5)
    assert [f["seq"] for f in rec.of("q")] == [1, 2, 3, 4, 5]
    assert [r[:3] for r in rec.of("q")[-1]["q"]] == [["AAA", 15.0, 100]]


async def test_watchlist_clients_get_only_their_symbols_and_nothing_when_they_did_not_change(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    snap, unknown = hub.subscribe(rec.client, ["BBB"])
    assert unknown == [] and [r[0] for r in orjson.loads(snap)["q"]] == ["BBB"]
    await publish(layer, store, "e1", 1, [row("AAA", 11.0)])
    await publish(layer, store, "e1", 2, [row("AAA", 12.0), row("BBB", 9.0)])
    await settle(hub, 2)
    assert [(f["seq"], [r[:3] for r in f["q"]]) for f in rec.of("q")] == [(2, [["BBB", 9.0, 100]])]


async def test_clients_with_the_same_symbols_share_one_frame(setup):
    hub, layer, store = setup
    a, b = Recorder(hub), Recorder(hub)
    hub.subscribe(a.client, ["AAA", "BBB"])
    hub.subscribe(b.client, ["BBB", "AAA"])
    assert len(hub.groups) == 1
    await publish(layer, store, "e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    assert a.frames[-1] == b.frames[-1]


async def test_unknown_symbols_are_reported_and_known_ones_still_subscribed(setup):
    hub, _, _ = setup
    rec = Recorder(hub)
    _, unknown = hub.subscribe(rec.client, ["AAA", "ZZZ"])
    assert unknown == ["ZZZ"] and rec.client.symbols == frozenset({"AAA"})


async def test_too_many_symbols_leaves_the_subscription_unchanged(setup):
    hub, _, _ = setup
    hub.set_symbols([{"s": f"S{i}"} for i in range(MAX_SYMBOLS + 5)])
    rec = Recorder(hub)
    hub.subscribe(rec.client, [f"S{i}" for i in range(MAX_SYMBOLS)])
    with pytest.raises(ProtocolError):
        hub.subscribe(rec.client, ["S100"])
    assert len(rec.client.symbols) == MAX_SYMBOLS


async def test_unsubscribe_from_the_whole_board_keeps_the_others(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    hub.unsubscribe(rec.client, ["AAA"])
    assert rec.client.symbols == frozenset({"BBB", "CCC"})
    hub.unsubscribe(rec.client, None)
    await publish(layer, store, "e1", 1, [row("BBB", 11.0)])
    await settle(hub, 1)
    assert rec.of("q") == []


async def test_a_gap_in_seq_makes_the_hub_resync_and_snapshot_everyone(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    await store.save("e1", 1, [row("AAA", 11.0)])  # batch 1 never reaches the hub
    await publish(layer, store, "e1", 2, [row("BBB", 12.0)])
    await settle(hub, 2)
    snaps = rec.of("snap")
    assert snaps[-1]["seq"] == 2
    assert {r[0]: r[1] for r in snaps[-1]["q"]} == {"AAA": 11.0, "BBB": 12.0, "CCC": 10.0}


async def test_a_new_epoch_replaces_the_state(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    await store.save("e2", 0, [row("AAA", 50.0)])
    await publish(layer, store, "e2", 1, [row("AAA", 51.0)])
    await settle(hub, 1)
    assert hub.epoch == "e2" and set(hub.rows) == {"AAA"}
    assert rec.of("snap")[-1]["q"][0][1] == 51.0


async def test_resume_in_the_same_epoch_sends_only_what_changed(setup):
    hub, layer, store = setup
    for seq, (sym, last) in enumerate([("AAA", 11.0), ("BBB", 12.0), ("AAA", 13.0)], start=1):
        await publish(layer, store, "e1", seq, [row(sym, last)])
    await settle(hub, 3)
    rec = Recorder(hub)
    frame, _ = hub.resume(rec.client, "e1", 1, None)
    snap = orjson.loads(frame)
    assert (snap["t"], snap["epoch"], snap["seq"]) == ("snap", "e1", 3)
    assert [r[:7] for r in snap["q"]] == [row("AAA", 13.0)[:7], row("BBB", 12.0)[:7]]
    frame, _ = hub.resume(rec.client, "e1", 3, None)
    assert orjson.loads(frame)["q"] == []  # nothing missed


async def test_resume_from_another_epoch_or_an_unknown_seq_gets_a_full_snapshot(setup):
    hub, _, _ = setup
    rec = Recorder(hub)
    assert len(orjson.loads(hub.resume(rec.client, "old", 1, None)[0])["q"]) == 3
    assert len(orjson.loads(hub.resume(rec.client, "e1", 99, None)[0])["q"]) == 3


async def test_symbol_changes_go_to_every_client(setup):
    hub, layer, _ = setup
    rec = Recorder(hub)
    await layer.group_send(bus.CONTROL_GROUP, bus.symbols_message([{"s": "NEW"}]))
    for _ in range(100):
        if rec.of("sym"):
            break
        await asyncio.sleep(0.01)
    assert rec.of("sym") == [{"t": "sym", "symbols": [{"s": "NEW"}]}]
    assert hub.known == {"NEW"}


async def test_leave_removes_the_client_and_empty_groups(setup):
    hub, _, _ = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, ["AAA"])
    hub.leave(rec.client)
    assert hub.groups == {} and hub.client_count == 0


async def test_a_failing_client_does_not_stop_the_others(setup):
    hub, layer, store = setup

    async def broken(message):
        raise ConnectionResetError

    bad = Client(broken)
    hub.join(bad)
    hub.subscribe(bad, None)
    good = Recorder(hub)
    hub.subscribe(good.client, None)
    await publish(layer, store, "e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    assert [f["seq"] for f in good.of("q")] == [1]


async def test_a_client_that_stops_acknowledging_is_paused_then_resynced(setup):
    hub, layer, store = setup
    slow, fast, silent = Recorder(hub), Recorder(hub), Recorder(hub)
    for rec in (slow, fast, silent):
        hub.subscribe(rec.client, None)
    hub.ack(slow.client, 0)
    hub.ack(fast.client, 0)
    await publish(layer, store, "e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    sent_at = hub.groups[None].sends[-1][1]
    hub.ack(fast.client, 1)
    hub.pause_laggards(sent_at + ACK_TIMEOUT / 2)
    assert hub.paused == set()  # not overdue yet
    hub.pause_laggards(sent_at + ACK_TIMEOUT + 0.1)
    assert hub.paused == {slow.client}  # `fast` acked; `silent` never acks: left to the ping timeout
    await publish(layer, store, "e1", 2, [row("AAA", 12.0)])
    await settle(hub, 2)
    assert [f["seq"] for f in slow.of("q")] == [1]  # nothing more was sent to it
    assert [f["seq"] for f in fast.of("q")] == [1, 2] == [f["seq"] for f in silent.of("q")]
    hub.ack(slow.client, 0)  # still behind what it was sent
    assert slow.of("snap") == [] and hub.paused == {slow.client}
    hub.ack(slow.client, 1)
    snap = slow.of("snap")[-1]
    assert snap["seq"] == 2 and snap["q"][0][:2] == ["AAA", 12.0] and hub.paused == set()
    await publish(layer, store, "e1", 3, [row("AAA", 13.0)])
    await settle(hub, 3)
    assert [f["seq"] for f in slow.of("q")] == [1, 3]
    assert hub.client_count == 3


async def test_a_quiet_watchlist_is_not_mistaken_for_a_slow_client(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, ["CCC"])
    hub.ack(rec.client, 0)
    for seq in range(1, 4):
        await publish(layer, store, "e1", seq, [row("AAA", 10.0 + seq)])  # CCC never changes
    await settle(hub, 3)
    hub.pause_laggards(time.monotonic() + 60)
    assert hub.paused == set()


async def test_a_paused_client_that_leaves_is_forgotten(setup):
    hub, layer, store = setup
    rec = Recorder(hub)
    hub.subscribe(rec.client, None)
    hub.ack(rec.client, 0)
    await publish(layer, store, "e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    hub.pause_laggards(time.monotonic() + ACK_TIMEOUT + 1)
    assert hub.paused == {rec.client}
    hub.leave(rec.client)
    assert hub.paused == set() and hub.client_count == 0


class FlowControlled(Recorder):
    """A client whose server suspends a send while its buffer is full, as uvicorn does."""

    def __init__(self, hub: Hub):
        super().__init__(hub)
        self.writable = asyncio.Event()
        self.writable.set()

    async def send(self, message: dict) -> None:
        await self.writable.wait()
        await super().send(message)


async def test_a_send_the_server_suspends_never_holds_up_the_others(setup):
    hub, layer, store = setup
    stuck, other = FlowControlled(hub), Recorder(hub)
    for rec in (stuck, other):
        hub.subscribe(rec.client, None)
    stuck.writable.clear()  # its buffer is full
    for seq in range(1, 4):
        await publish(layer, store, "e1", seq, [row("AAA", 10.0 + seq)])
    await settle(hub, 3)
    assert [f["seq"] for f in other.of("q")] == [1, 2, 3]
    assert hub.paused == {stuck.client} and stuck.frames == []  # one send waits; no more are queued
    stuck.writable.set()  # it drained
    for _ in range(100):
        if stuck.of("snap"):
            break
        await asyncio.sleep(0.01)
    assert [f["seq"] for f in stuck.of("q")] == [1]  # the send that waited, then...
    assert stuck.of("snap")[-1]["seq"] == 3  # ...a snapshot of what it missed
    await publish(layer, store, "e1", 4, [row("AAA", 14.0)])
    await settle(hub, 4)
    assert [f["seq"] for f in stuck.of("q")] == [1, 4] and hub.paused == set()


async def test_a_client_that_leaves_while_a_send_waits_is_forgotten(setup):
    hub, layer, store = setup
    stuck = FlowControlled(hub)
    hub.subscribe(stuck.client, None)
    stuck.writable.clear()
    await publish(layer, store, "e1", 1, [row("AAA", 11.0)])
    await settle(hub, 1)
    task = stuck.client.stall
    assert task is not None
    hub.leave(stuck.client)
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and hub.paused == set() and hub.client_count == 0


async def test_a_hub_that_falls_behind_conflates_batches_into_snapshots(setup):
    hub, layer, store = setup
    board, watch = Recorder(hub), Recorder(hub)
    hub.subscribe(board.client, None)
    hub.subscribe(watch.client, ["BBB"])
    stale = int(time.time() * 1000) - 2000  # these batches arrive two seconds late
    await publish(layer, store, "e1", 1, [row("AAA", 11.0, stale)])
    await publish(layer, store, "e1", 2, [row("BBB", 12.0, stale)])
    await publish(layer, store, "e1", 3, [row("AAA", 13.0, stale), row("CCC", 9.0, stale)])
    await settle(hub, 3)
    assert [f["seq"] for f in board.of("q")] == [1]  # then held back: behind, and just sent
    await publish(layer, store, "e1", 4, [row("CCC", 8.0)])  # caught up
    await settle(hub, 4)
    snap = board.of("snap")[-1]
    assert snap["seq"] == 4 and {r[0]: r[1] for r in snap["q"]} == {"AAA": 13.0, "BBB": 12.0, "CCC": 8.0}
    assert [r[0] for r in watch.of("snap")[-1]["q"]] == ["BBB"] and watch.of("q") == []
    await publish(layer, store, "e1", 5, [row("AAA", 14.0)])
    await settle(hub, 5)
    assert board.of("q")[-1]["seq"] == 5  # back to plain batches


async def test_held_back_changes_are_sent_even_if_no_batch_follows(setup):
    hub, layer, store = setup
    board = Recorder(hub)
    hub.subscribe(board.client, None)
    stale = int(time.time() * 1000) - 2000
    await publish(layer, store, "e1", 1, [row("AAA", 11.0, stale)])
    await publish(layer, store, "e1", 2, [row("BBB", 12.0, stale)])
    await settle(hub, 2)
    for _ in range(200):  # the hub's sweep flushes them within a second
        if board.of("snap"):
            break
        await asyncio.sleep(0.01)
    assert board.of("snap")[-1]["seq"] == 2 and [r[0] for r in board.of("snap")[-1]["q"]] == ["BBB"]
