"""The hub: one per server process, between the layer's events and the process's connections.

Fan-out policy (docs/DESIGN.md §3):

- **One subscription per process.** The hub reads one stream of events (batches, catalog
  changes); connections never subscribe to the layer themselves.
- **Encode once per batch, allocate nothing per recipient.** Each changed row is encoded once
  (``frames``); connections with the same selection form one group and share one ``Frame``
  joined from those fragments. The loop over recipients makes no object.
- **Only the latest state matters.** The ``Replica`` keeps every key's latest row and which
  keys recent batches changed, so a new, resuming or caught-up connection gets a snap of
  just what it needs.
- **Gaps are repaired, not hidden.** A batch that does not follow on (a new epoch, a layer
  outage, a lost message) makes the hub reload a snapshot and send every group a snap.
- **One feed run at a time.** A batch, or a snapshot, of a run older than the newest heard is
  dropped: a feed that lost its lease (in a Redis failover) is never mixed into the newer stream
  (``ticker.epochs``).
- **Nobody waits for a slow client**: the ``Holds`` say who is held, what they missed and who
  is dropped (``holds``); the hub sends the catch-ups and closes the dropped (their ``drop``).
- **A hub that cannot keep up merges batches**: the ``Pacer`` says which batches go out as they
  are, which are held back to go out merged, and when (``pacer``).
- **A server that goes away says so**: ``restart`` lets every connection go, each told through
  its ``drop`` to reconnect at once (the drain on SIGTERM, ``dashboard.drain``).
- **A key its source stopped updating is said to be stale**, by the server's one clock: on each
  sweep the ``Staleness`` says which keys' newest rows are older than the feed's mark (every key
  while the feed says its source's link is down: judged as soon as the batch says so), and the
  hub sends the groups whose part of that changed (``staleness``).

The hub reads the clock it is given in two places, ``now`` (steady) and ``age_ms`` (wall), and
hands the time down: the pacer and the holds read none. (``pulse`` reads the event loop's own
clock: how late the loop runs is what it measures.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping

from .delivery import Client, Frame, Outbox
from .frames import Frames
from .holds import ACK_TIMEOUT, HOLD_LIMIT, Holds
from .pacer import Pacer
from .registry import Registry
from .replica import Replica, Step
from .staleness import Staleness, part
from .stats import Stats
from .types import NOTHING, Batch, Catalog, Clock, Codec, Drop, Event, Marks, Rejoined, Row, Selection, Send, Snapshot

log = logging.getLogger(__name__)

PULSE_SECONDS = 0.05  # how often the event loop's lateness is measured
SWEEP_SECONDS = 0.5
ACK_INTERVAL_MS = 2000  # how often a client is asked to ack (hello.limits.ack_ms)


class TooManyKeys(Exception):
    """A subscription would pass the hub's ``max_keys``; nothing was changed."""


class Hub:
    """Fans batches out to this process's clients. See the module docstring for the policy."""

    def __init__(
        self,
        codec: Codec,
        load: Callable[[], Awaitable[Snapshot]],
        load_catalog: Callable[[], Awaitable[Catalog]],
        events: Callable[[], AsyncIterator[Event]],
        *,
        max_keys: int,
        fast_path: bool = False,
        sndbuf: int = 0,
        ack_timeout: float = ACK_TIMEOUT,
        hold_limit: float = HOLD_LIMIT,
        clock: Clock = time,
        marks: Marks | None = None,
    ) -> None:
        self.codec = codec
        self.marks = marks  # None: no key is ever judged stale
        self.staleness = Staleness()
        self.load = load
        self.load_catalog = load_catalog
        self.events = events
        self.max_keys = max_keys
        self.fast_path = fast_path
        self.sndbuf = sndbuf
        self.clock = clock
        self.stats = Stats()
        self.replica = Replica()
        self.frames = Frames(codec, self.replica)
        self.registry: Registry[Client] = Registry()
        self.holds = Holds(self.registry, self.replica, self.stats, ack_timeout=ack_timeout, hold_limit=hold_limit)
        self.pacer = Pacer()
        self.outbox = Outbox()
        self.drops: dict[Client, Callable[[Drop], None]] = {}  # how to close each connection
        self.restarting = False  # since ``restart``: every connection is sent away
        self.flushing: asyncio.TimerHandle | None = None  # sends the batches held back, unless a fan-out does
        self.synced = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    # Lifecycle

    async def start(self) -> None:
        """Load the catalog and start listening; the first resync comes with the first join."""
        self.replica.set_catalog(await self.load_catalog())
        self.tasks = [asyncio.create_task(coro) for coro in (self.run(), self.sweep(), self.settle(), self.pulse())]

    async def stop(self) -> None:
        if self.flushing is not None:
            self.flushing.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def run(self) -> None:
        async for event in self.events():
            try:
                if isinstance(event, Batch):
                    await self.on_batch(event)
                elif isinstance(event, Catalog):
                    self.on_catalog(event)
                elif isinstance(event, Rejoined):  # whatever was sent meanwhile is lost: read it all again
                    self.on_catalog(await self.load_catalog())
                    await self.resync()
            except Exception:
                log.exception("hub: could not handle %s", type(event).__name__)

    async def settle(self) -> None:
        """Act on clients that were held or released, as soon as they change."""
        while True:
            await self.outbox.ready.wait()
            self.drain(self.now())

    async def sweep(self) -> None:
        """Hold clients that stopped acknowledging; drop the ones held too long."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = self.now()
            self.hold_laggards(now)
            self.drop_stuck(now)
            self.judge_stale(self.clock.time() * 1000)

    async def pulse(self) -> None:
        """Measure how late this process's event loop runs (``Stats.loop_late_ms``, a maximum that
        decays by a tenth a pulse): the fan-out, and anything else the process does, delays it."""
        loop = asyncio.get_running_loop()
        stats = self.stats
        while True:
            due = loop.time() + PULSE_SECONDS
            await asyncio.sleep(PULSE_SECONDS)
            stats.loop_late_ms = max((loop.time() - due) * 1000, stats.loop_late_ms * 0.9)

    def now(self) -> float:
        """Seconds on the steady clock: handed to the pacer, the holds and the groups' logs."""
        return self.clock.monotonic()

    def age_ms(self, ts_ms: int) -> float:
        """How old a time of the feed's (Unix epoch ms) is, by the wall clock."""
        return self.clock.time() * 1000 - ts_ms

    # Layer events

    async def on_batch(self, batch: Batch) -> None:
        """Apply a batch and send it (``apply``), or resync on a gap. A new source goes to every
        client as a ``sym`` first; the source's link going down or coming back is judged at once."""
        if batch.stale_ms:
            self.staleness.mark_ms = batch.stale_ms
        self.stats.feed_gaps = batch.gaps
        went = batch.down != self.staleness.down  # the source's link went down, or came back
        self.staleness.down = self.stats.source_down = batch.down
        version = self.replica.catalog_version
        step, changed = self.replica.accept(batch)
        if self.replica.catalog_version != version:  # the feed's source changed: every client hears
            self.send_catalog()
        if step is Step.SKIP:
            return
        if step is Step.FENCED:
            if not self.stats.fenced:
                log.warning("hub: batch %s/%d is of a run older than %s: dropped (a feed that lost its lease)",
                            batch.epoch, batch.seq, self.replica.fence)
            self.stats.fenced += 1
            return
        if step is Step.RESYNC:
            log.info("hub: batch %s/%d after %s/%d: resync", batch.epoch, batch.seq, self.replica.epoch,
                     self.replica.seq)
            await self.resync()
        else:
            self.apply(batch, changed)
        if went:  # at once, not at the next sweep
            self.judge_stale(self.clock.time() * 1000)

    def apply(self, batch: Batch, changed: frozenset[str]) -> None:
        """Send a batch that follows on: as it is, held back, or merged with those held back."""
        self.frames.forget((*changed, *batch.removed))
        now, pacer, stats = self.now(), self.pacer, self.stats
        if batch.ts_ms:
            stats.lag_ms = self.age_ms(batch.ts_ms)
        if pacer.hold_back(changed, batch.ts_ms, stats.lag_ms, now):
            stats.conflated += 1
            self.flush_later(now)
        elif pacer.follows_on(batch.seq):
            self.fan_out(batch.seq, self.frames.fragments(batch.rows), now)
        else:
            self.fan_out_snapshots(pacer.held, now)

    def flush_later(self, now: float) -> None:
        """Have what is held back sent once the pacer says so, unless a fan-out sends it first."""
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().call_later(self.pacer.flush_delay(now), self.flush)

    def flush(self) -> None:
        """The flush timer: send what is held back if the pacer says it is due, else wait again."""
        self.flushing = None
        pacer, now = self.pacer, self.now()
        if not pacer.held:
            return
        if pacer.flush_due(now):
            self.fan_out_snapshots(pacer.held, now)
        else:
            self.flush_later(now)

    def on_catalog(self, catalog: Catalog) -> None:
        if self.replica.set_catalog(catalog):
            self.send_catalog()

    def send_catalog(self) -> None:
        """Send every client the catalog (a ``sym``: the symbols, the market, the source)."""
        self.drain(self.now())
        frame = self.frames.catalog()
        for _, group in self.registry.items():
            for client in group.members:
                client.deliver(frame)

    async def resync(self) -> None:
        """Reload the snapshot and send every group a snap of its selection."""
        try:
            snap = await self.load()
        except Exception as exc:
            log.warning("hub: store unavailable (%s); will resync on the next batch", exc)
            self.replica.epoch = ""  # the next batch does not follow on: it triggers another resync
            return
        if not snap.epoch:  # an empty store (a feed not started yet, a Redis that lost everything):
            self.replica.epoch = ""  # keep what clients have; the feed's next batch resyncs
            return
        if not self.replica.load(snap):  # a store behind the newest run heard: keep what clients have
            log.info("hub: the store holds run %s, older than %s: not loaded", snap.epoch, self.replica.fence)
            return
        self.frames.clear()
        self.synced.set()
        self.stats.resyncs += 1
        self.fan_out_snapshots(None, self.now())

    # Fan-out

    def fan_out(self, seq: int, fragments: Mapping[str, bytes], now: float) -> None:
        """Send batch ``seq`` to every group whose keys changed: one frame per group."""
        self.drain(now)
        stats, mark = self.stats, self.frames.mark()
        for key, group in self.registry.items():
            if key is None:
                parts: Iterable[bytes] = fragments.values()
            else:
                parts = [fragment for sym, fragment in fragments.items() if sym in key]
                if not parts:
                    continue
            group.sent(seq, now)
            frame = self.frames.delta(seq, parts, mark)
            for client in group.members:
                client.deliver(frame)
            stats.frames += len(group.members)
            stats.bytes += len(group.members) * len(frame.wire)
        stats.batches += 1
        self.fanned(seq, now)

    def fan_out_snapshots(self, changed: frozenset[str] | None, now: float) -> None:
        """Send every group a snap of its keys among ``changed``: the batches held back since the
        last fan-out, merged (``since`` that fan-out's seq), joined from rows encoded once. None:
        all of its keys, a resync."""
        self.drain(now)
        frames, seq, mark = self.frames, self.replica.seq, self.frames.mark()
        since = None if changed is None else self.pacer.seq
        rows = frames.rows(changed)
        for key, group in self.registry.items():
            if key == NOTHING:
                continue
            if key is None:
                parts: Iterable[bytes] = rows.values()
            elif changed is None:
                parts = frames.rows(key).values()
            else:
                parts = [row for k, row in rows.items() if k in key]
                if not parts:
                    continue
            group.sent(seq, now)
            frame = frames.snap(parts, since, mark)
            for client in group.members:
                client.deliver(frame)
        self.fanned(seq, now)

    def fanned(self, seq: int, started: float) -> None:
        """A fan-out that started at ``started`` has sent every group everything up to ``seq``."""
        stats, pacer = self.stats, self.pacer
        stats.fanout_seconds += pacer.fanned(seq, self.replica.updated_ms, started, self.now())
        stats.fanout_cost = pacer.cost

    # Held clients: the holds decide, the hub sends

    def drain(self, now: float) -> None:
        """Park the clients held since the last look, catch up the ones live again (before every
        fan-out: see ``Holds.update``)."""
        holds = self.holds
        for client in self.outbox.take():
            if holds.update(client, now):
                self.catch_up(client, now)

    def catch_up(self, client: Client, now: float) -> None:
        """Send a client that is live again what it missed, then file it in its group."""
        missed = self.holds.catch_up(client)
        if missed.catalog:
            client.deliver(self.frames.catalog())
        if missed.snap:
            client.deliver(self.frames.snap_of(missed.keys, missed.since))
        if self.marks is not None:  # the stale keys may have changed while it was held
            client.deliver(self.stale_frame(self.marks, client.selection))
        self.holds.refile(client, now)

    def hold_laggards(self, now: float) -> None:
        """Hold every acknowledging client that sat on a frame for over the ack timeout."""
        self.drain(now)
        lagging = self.holds.laggards(now)
        for client in lagging:
            client.hold_for_acks()
        if lagging:
            log.info("hub: held %d client(s) that stopped reading", len(lagging))
            self.drain(now)

    def drop_stuck(self, now: float) -> None:
        """Close every client held for longer than the hold limit: it stopped reading."""
        stuck = self.holds.stuck(now)
        for client in stuck:
            drop = self.drops.get(client)
            self.leave(client)
            if drop is not None:
                drop(Drop.TOO_SLOW)
        self.stats.dropped += len(stuck)
        if stuck:
            log.info("hub: dropped %d client(s) held for over %.0f s", len(stuck), self.holds.hold_limit)

    # Stale keys: the staleness decides, the hub sends

    def judge_stale(self, now_ms: float) -> None:
        """Find the keys past the feed's mark at ``now_ms`` (wall clock), all but the catalog's
        quiet ones; when they changed, send each group whose part changed its stale frame (a held
        client gets it on catch-up)."""
        marks, replica = self.marks, self.replica
        if marks is None:
            return
        before, quiet = self.staleness.since, replica.catalog.quiet
        stamps = ((key, marks.stamp(row)) for key, row in replica.rows.items() if key not in quiet)
        if not self.staleness.judge(stamps, now_ms):
            return
        for key, group in self.registry.items():
            if key == NOTHING or self.staleness.of(key) == part(before, key):
                continue
            frame = self.stale_frame(marks, key)
            for client in group.members:
                client.deliver(frame)

    def stale_frame(self, marks: Marks, keys: Selection) -> Frame:
        return Frame(marks.stale(self.staleness.of(keys)), marks.stale_kind)

    # What consumers call

    def connect(self, send: Send, drop: Callable[[Drop], None] | None = None, *, stream: bool = False) -> Client:
        """A new connection (``stream``: an event stream): filed with no keys, sent hello. Acks are
        asked of it unless its server reports its buffer (daphne). ``drop`` closes the connection
        when the hub lets it go, told why; after ``restart``, on the next loop turn."""
        client = Client(send, self.outbox, fast_path=self.fast_path, sndbuf=self.sndbuf, stream=stream)
        if drop is not None:
            self.drops[client] = drop
            if self.restarting:  # once the caller holds the client
                asyncio.get_running_loop().call_soon(self.send_away, client, Drop.RESTART)
        client.joined = self.replica.seq
        self.registry.file(client)
        client.deliver(self.frames.hello(0 if client.sees_buffer else ACK_INTERVAL_MS))
        return client

    def leave(self, client: Client) -> None:
        client.close()
        self.drops.pop(client, None)
        self.holds.forget(client)
        self.registry.take_out(client)

    def restart(self) -> int:
        """The server is going away: let every connection with a ``drop`` go, each told to
        reconnect at once (``Drop.RESTART``), and every one that connects from now on.

        Returns:
            How many were told.
        """
        self.restarting = True
        clients = list(self.drops)
        for client in clients:
            self.send_away(client, Drop.RESTART)
        return len(clients)

    def send_away(self, client: Client, why: Drop) -> None:
        """Forget a connection and tell it why through its ``drop`` (unless it left already)."""
        drop = self.drops.get(client)
        if drop is not None:
            self.leave(client)
            drop(why)

    def reply(self, client: Client, text: str, kind: str) -> None:
        """Send a consumer's reply (``kind``: its ``t``) through the client's one outgoing path."""
        client.deliver(Frame(text, kind))

    def ack(self, client: Client, seq: int) -> None:
        """``client`` applied everything up to ``seq``; held for lagging, it is released once that
        covers what it was sent before."""
        if self.holds.ack(client, seq):
            client.release_acks()

    def subscribe(self, client: Client, keys: Iterable[str] | None) -> list[str]:
        """Add keys to a client (None: all) and send it their snap.

        Returns:
            The unknown keys, which were not added.

        Raises:
            TooManyKeys: the client would follow more than ``max_keys``; nothing changed.
        """
        added, unknown = self.add(client, keys)
        self.send_snap(client, added)
        return unknown

    def unsubscribe(self, client: Client, keys: Iterable[str] | None) -> None:
        """Remove keys (None: all); unsubscribing from the whole board leaves the explicit rest."""
        if keys is None:
            self.move(client, NOTHING)
            return
        current = client.selection if client.selection is not None else self.replica.catalog.keys
        self.move(client, current - set(keys))

    def resume(self, client: Client, epoch: str, seq: int, keys: Iterable[str] | None) -> list[str]:
        """Subscribe after a reconnect: when this hub holds every batch after ``seq`` of the same
        epoch, the snap has only the keys changed since (full rows); else all of them."""
        _, unknown = self.add(client, keys)
        self.send_snap(client, *self.replica.missed(epoch, seq, client.selection))
        return unknown

    def add(self, client: Client, keys: Iterable[str] | None) -> tuple[Selection, list[str]]:
        """Add keys to a client's selection; the keys added and the unknown ones."""
        if keys is None:
            self.move(client, None)
            return None, []
        wanted = set(keys)
        unknown = self.replica.unknown(wanted)
        added = frozenset(wanted.difference(unknown))
        if client.selection is not None:
            combined = client.selection | added
            if len(combined) > self.max_keys:
                raise TooManyKeys(f"at most {self.max_keys} symbols per connection")
            self.move(client, combined)
        return added, unknown

    def send_snap(self, client: Client, keys: Selection, since: int | None = None) -> None:
        """The snap of ``keys``, then the stale keys of all the client follows, if any."""
        if not client.deliver(self.frames.snap_of(keys, since)):
            self.holds.owe_whole(client)  # held: its catch-up sends all it follows
        elif self.marks is not None and self.staleness.of(client.selection):
            client.deliver(self.stale_frame(self.marks, client.selection))

    def move(self, client: Client, selection: Selection) -> None:
        if client in self.holds:
            client.selection = selection
            self.holds.owe_whole(client)
            return
        self.registry.take_out(client)
        client.selection = selection
        client.joined = self.replica.seq
        self.registry.file(client)

    # What views, health and metrics read: nothing else of the hub's state leaves it

    @property
    def position(self) -> tuple[str, int]:
        """The state's ``(epoch, seq)``."""
        return self.replica.epoch, self.replica.seq

    @property
    def catalog(self) -> Catalog:
        """The symbol list as clients see it."""
        return self.replica.catalog

    @property
    def source(self) -> str:
        """Where the feed's prices come from ("" before its first batch)."""
        return self.replica.source

    def unknown(self, keys: Iterable[str]) -> list[str]:
        """The keys among ``keys`` that are not in the catalog."""
        return self.replica.unknown(keys)

    def hello_text(self, ack_ms: int = 0) -> str:
        """The hello frame as a client without acks would get it now."""
        return self.frames.hello_text(ack_ms)

    @property
    def held_count(self) -> int:
        """Clients held (sent nothing until they catch up)."""
        return len(self.holds)

    @property
    def client_count(self) -> int:
        return len(self.registry) + len(self.holds)

    @property
    def direct_count(self) -> int:
        """Clients on daphne's fast path."""
        return sum(client.writes_direct for _, group in self.registry.items() for client in group.members)

    def feed_age(self) -> float | None:
        """Seconds since the newest batch this hub has seen, None before any."""
        updated = self.replica.updated_ms
        return None if not updated else max(0.0, self.age_ms(updated) / 1000)

    def mark(self) -> str:
        """Where the state is, as an event stream's ``id``: ``epoch:seq`` (``Last-Event-ID`` resumes)."""
        return self.frames.mark()

    def rows(self, keys: Selection) -> list[Row]:
        return self.replica.select(keys)

    def stale(self, keys: Selection) -> dict[str, int]:
        """The stale keys among ``keys`` (None: all), each with the time of its newest row."""
        return self.staleness.of(keys)
