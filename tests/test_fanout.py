"""The fan-out package on its own, driven by a stream that is not stock quotes: room sensors.

It shows what another Channels project would reuse: a codec of its own, rows keyed by their
first item, and nothing of the feed, the ORM or prices.
"""

from __future__ import annotations

import asyncio
import json

from tests.helpers.waiting import eventually
from ticker.epochs import new_epoch
from ticker.fanout.hub import Hub
from ticker.fanout.registry import Group, Registry
from ticker.fanout.replica import SILENT_MS, Replica, Step
from ticker.fanout.types import NOTHING, Batch, Catalog, Rejoined


class SensorCodec:
    """Frames of a made-up building monitor: rows are ``[room, celsius, people]``."""

    hello_kind, snap_kind, delta_kind, catalog_kind = "welcome", "state", "change", "rooms"

    def hello(self, epoch, seq, catalog, ack_ms, source):
        return json.dumps({"kind": "welcome", "rooms": [c["room"] for c in catalog.entries], "at": [epoch, seq]})

    def row(self, row):
        return json.dumps(row).encode()

    def snap(self, epoch, seq, rows, since=None):
        rooms = ",".join(r.decode() for r in rows)
        return f'{{"kind":"state","at":{json.dumps([epoch, seq])},"since":{json.dumps(since)},"rooms":[{rooms}]}}'

    def fragment(self, row):
        return json.dumps(row).encode()

    def delta(self, seq, fragments):
        return f'{{"kind":"change","seq":{seq},"rooms":[{b",".join(fragments).decode()}]}}'

    def catalog(self, catalog, source):
        return json.dumps({"kind": "rooms", "rooms": [c["room"] for c in catalog.entries]})


class Snapshot:
    def __init__(self, epoch, seq, rows, updated_ms=1):
        self.epoch, self.seq, self.rows, self.updated_ms = epoch, seq, rows, updated_ms


ROOMS = Catalog(frozenset({"lab", "hall"}), [{"room": "lab"}, {"room": "hall"}])


async def test_a_hub_fans_out_a_stream_that_is_not_quotes():
    events: asyncio.Queue = asyncio.Queue()
    state = Snapshot("building-1", 0, {"lab": ["lab", 21.0, 3], "hall": ["hall", 18.5, 0]})

    async def load():
        return state

    async def load_catalog():
        return ROOMS

    async def stream():
        while True:
            yield await events.get()

    hub = Hub(SensorCodec(), load, load_catalog, stream, max_keys=10)
    await hub.start()
    got: list[dict] = []

    async def send(message):
        got.append(json.loads(message["text"]))

    client = hub.connect(send)
    await events.put(Rejoined())
    await asyncio.wait_for(hub.synced.wait(), 2)
    assert hub.subscribe(client, ["lab", "kitchen"]) == ["kitchen"]
    state = Snapshot("building-1", 1, {"lab": ["lab", 22.0, 4], "hall": ["hall", 18.5, 0]})
    await events.put(Batch("building-1", 1, [["lab", 22.0, 4]], ts_ms=0))
    await events.put(Batch("building-1", 2, [["hall", 19.0, 1]], ts_ms=0))  # not a followed room: nothing sent
    await eventually(lambda: hub.replica.seq == 2, 2)
    await hub.stop()
    assert [m["kind"] for m in got] == ["welcome", "state", "change"]
    assert got[0]["rooms"] == ["lab", "hall"]
    assert got[-1] == {"kind": "change", "seq": 1, "rooms": [["lab", 22.0, 4]]}


def test_the_replica_skips_applies_or_asks_for_a_resync():
    replica = Replica()
    replica.load(Snapshot("e", 1, {"a": ["a", 1]}))
    assert replica.accept(Batch("e", 1, [["a", 0]])) == (Step.SKIP, NOTHING)
    assert replica.accept(Batch("e", 2, [["b", 2]])) == (Step.APPLIED, frozenset({"b"}))
    assert replica.accept(Batch("e", 4, [["a", 4]]))[0] is Step.RESYNC
    assert replica.accept(Batch("f", 3, [["a", 4]]))[0] is Step.RESYNC
    assert replica.changed_since("e", 1) == {"b"} and replica.changed_since("e", 2) == set()
    assert replica.changed_since("e", 0) is None  # older than what it kept since the load
    assert replica.changed_since("other", 2) is None
    assert replica.select(None) == [["a", 1], ["b", 2]] and replica.select(frozenset({"b", "z"})) == [["b", 2]]


def test_the_replica_drops_the_batches_of_an_older_run_while_the_newer_one_is_heard():
    """A feed that lost its lease (a failover lost the newest renewal) still publishes: its batches
    are neither applied nor a cause to resync, and a store behind the newer run is not loaded."""
    t = 1_800_000_000_000
    old, new = new_epoch(now_ms=t), new_epoch(now_ms=t + 3000)
    replica = Replica()
    replica.load(Snapshot(old, 5, {"a": ["a", 1]}, t))
    assert replica.accept(Batch(new, 1, [["a", 2]], ts_ms=t + 3000))[0] is Step.RESYNC
    assert not replica.load(Snapshot(old, 6, {"a": ["a", 9]}, t + 3100))  # the store the old feed still writes
    assert replica.epoch == old and replica.rows == {"a": ["a", 1]}  # nothing changed: resync again later
    assert replica.load(Snapshot(new, 1, {"a": ["a", 2]}, t + 3000))
    assert replica.accept(Batch(old, 6, [["a", 9]], ts_ms=t + 3200)) == (Step.FENCED, NOTHING)
    assert replica.accept(Batch(new, 2, [["a", 3]], ts_ms=t + 3300))[0] is Step.APPLIED
    assert replica.accept(Batch(old, 7, [["a", 9]], ts_ms=t + 3400))[0] is Step.FENCED
    assert replica.rows == {"a": ["a", 3]}


def test_an_older_run_is_followed_again_once_the_newer_one_has_been_silent_past_the_limit():
    """Two faults at once (the newer run's whole history lost from Redis while an older feed that
    never saw it went on): the board is not stale for ever."""
    t = 1_800_000_000_000
    old, new = new_epoch(now_ms=t), new_epoch(now_ms=t + 3000)
    replica = Replica()
    replica.load(Snapshot(new, 1, {"a": ["a", 2]}, t + 3000))
    assert replica.accept(Batch(old, 8, [["a", 9]], ts_ms=t + 3000 + SILENT_MS - 1))[0] is Step.FENCED
    assert replica.accept(Batch(old, 9, [["a", 9]], ts_ms=t + 3000 + SILENT_MS))[0] is Step.RESYNC
    assert replica.load(Snapshot(old, 9, {"a": ["a", 9]}, t + 3000 + SILENT_MS))
    assert replica.accept(Batch(old, 10, [["a", 10]], ts_ms=t + 3100 + SILENT_MS))[0] is Step.APPLIED


def test_the_replica_forgets_batches_beyond_its_window():
    replica = Replica(recent=3)
    replica.load(Snapshot("e", 0, {}))
    for seq in range(1, 6):
        replica.accept(Batch("e", seq, [[f"k{seq}", seq]]))
    assert replica.changed_since("e", 2) == {"k3", "k4", "k5"} and replica.changed_since("e", 1) is None


class Member:
    def __init__(self, selection):
        self.selection = selection


def test_the_registry_groups_identical_selections_and_drops_empty_groups():
    registry: Registry[Member] = Registry()
    a, b, c = Member(frozenset({"x"})), Member(frozenset({"x"})), Member(None)
    for member in (a, b, c):
        registry.file(member)
    assert len(registry.groups) == 2 and len(registry) == 3
    assert registry.take_out(a) is registry.groups[frozenset({"x"})]
    registry.take_out(b)
    assert list(registry.groups) == [None] and registry.take_out(b) is None


def test_a_group_judges_lateness_by_age_and_keeps_only_what_it_needs():
    group: Group[Member] = Group()
    for seq in range(1, 101):
        group.sent(seq, seq * 0.02)  # 100 sends in two seconds (20 ms batches)
    assert group.overdue(2.0, timeout=5.0) == 0
    assert group.overdue(5.51, timeout=5.0) == 25  # sent at 0.5 s, the newest older than 5 s
    assert group.log[0] == (25, 0.5) and group.sent_seq == 100


async def test_an_event_stream_names_its_events_as_the_codec_does():
    async def load():
        return Snapshot("building-1", 0, {"lab": ["lab", 21.0, 3]})

    async def load_catalog():
        return ROOMS

    async def stream():
        await asyncio.Event().wait()
        yield Rejoined()

    hub = Hub(SensorCodec(), load, load_catalog, stream, max_keys=10)
    await hub.start()
    await hub.resync()
    bodies: list[bytes] = []

    async def send(message):
        bodies.append(message["body"])

    client = hub.connect(send, stream=True)
    hub.subscribe(client, ["lab"])
    await hub.stop()
    assert [body.split(b"\n")[:2] for body in bodies] == [
        [b"event: welcome", b"id: building-1:0"], [b"event: state", b"id: building-1:0"]]
