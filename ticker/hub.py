"""The hub: one per server process, between the channel layer and the process's connections.

Fan-out policy (DESIGN.md §3):

- **One subscription per process.** The hub's listener is the only member of the
  ``ticker.quotes`` group in this process; browsers never join a group. The layer fans a
  batch out across processes, the hub fans it out to local connections.
- **Encode once per batch, allocate nothing per recipient.** Each changed row is encoded once
  (orjson) as a ``q`` fragment; connections with the same subscription form one ``Group`` and
  share one frame, built by joining fragments, wrapped in one ASGI message that every
  connection's ``send`` receives as it is. The loop over recipients makes no object.
- **Only the latest state matters.** The hub keeps the full row of every symbol, so a new,
  resuming or resynced connection gets a ``snap``; it also remembers which symbols the last
  ``RECENT_BATCHES`` batches changed, so a quick reconnect gets only those.
- **Gaps are repaired, not hidden.** A batch whose seq does not follow the last one (a new
  feed epoch, a layer outage, a message the layer dropped) makes the hub reload the quote
  store and send every connection a ``snap``.
- **Nobody waits for a slow client.** A send never makes the loop wait (``ticker.delivery``).
  A client whose server-side buffer is full (a send the server suspended, or Twisted's buffer
  on daphne's fast path) is held: sent nothing, so nothing piles up for it, its state being at
  most the hub's latest row per symbol; once it drains it gets a ``snap`` and goes on.
  Clients that acknowledge (``ack``; the page does) are also held when they sit on a frame for
  ``ACK_TIMEOUT``, before any buffer fills, and caught up by the ``ack`` that shows they read
  everything sent before. Clients that do neither are left to the server's keepalive ping
  timeout, which closes a connection that stopped reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from asgiref.sync import sync_to_async

from . import bus
from .delivery import ACK_INTERVAL_MS, NOTHING, Client, Group, Key, finish, send_now, text_message
from .fastpath import text_frame
from .models import Symbol
from .protocol import (
    ERR_TOO_MANY_SYMBOLS,
    MAX_SYMBOLS,
    SYM,
    TS,
    ProtocolError,
    Row,
    encode_hello,
    encode_quotes,
    encode_snap,
    encode_symbols,
    short_row,
)
from .store import QuoteStore, Snapshot

log = logging.getLogger(__name__)

RECENT_BATCHES = 600  # one minute at 10 batches a second
LAG_MS = 300  # a batch this old on arrival means the hub is behind the feed
CONFLATE_SECONDS = 0.5  # while behind, send at most this often
SWEEP_SECONDS = 0.5


def load_wire_symbols() -> list[dict[str, Any]]:
    return [s.as_wire() for s in Symbol.objects.all()]


class Hub:
    """Receives batches and symbol changes from the layer and fans them out to local clients."""

    def __init__(
        self,
        store: QuoteStore,
        node: str,
        listener: bus.Listener | None = None,
        load_symbols: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self.store = store
        self.load_symbols = load_symbols or sync_to_async(load_wire_symbols)
        self.node = node
        self.listener = listener or bus.Listener([bus.QUOTES_GROUP, bus.CONTROL_GROUP])
        self.epoch = ""
        self.seq = 0
        self.rows: dict[str, Row] = {}
        self.symbols: list[dict[str, Any]] = []
        self.known: set[str] = set()
        self.recent: deque[tuple[int, frozenset[str]]] = deque(maxlen=RECENT_BATCHES)  # symbols per batch
        self.groups: dict[Key, Group] = {}
        self.paused: set[Client] = set()  # held clients (see ticker.delivery)
        self.last_batch_ms = 0
        self.behind: frozenset[str] = NOTHING  # symbols changed by batches held back (conflating)
        self.fanned_at = 0.0  # monotonic time of the last fan-out
        self.synced = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    # Lifecycle

    async def start(self) -> None:
        """Load the symbol list and start listening; the first resync happens on the first join."""
        self.set_symbols(await self.load_symbols())
        self.listen()

    def listen(self) -> None:
        """Start receiving from the layer, and the sweep that holds laggards and flushes
        conflated changes."""
        self.tasks = [asyncio.create_task(self.run()), asyncio.create_task(self.watch_acks())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def run(self) -> None:
        async for message in self.listener.messages():
            try:
                kind = message["type"]
                if kind == bus.BATCH:
                    await self.on_batch(message)
                elif kind == bus.SYMBOLS:
                    self.on_symbols(message["symbols"])
                elif kind == bus.REJOINED:  # whatever was sent meanwhile is lost: read it all again
                    symbols = await self.load_symbols()
                    if symbols != self.symbols:
                        self.on_symbols(symbols)
                    await self.resync()
            except Exception:
                log.exception("hub: could not handle %s", message.get("type"))

    # Layer events

    async def on_batch(self, message: dict[str, Any]) -> None:
        epoch, seq = message["epoch"], message["seq"]
        if epoch == self.epoch and seq <= self.seq:
            return  # already in the state we loaded from the store
        if epoch != self.epoch or seq != self.seq + 1:
            log.info("hub: batch %s/%d after %s/%d: resync", epoch, seq, self.epoch, self.seq)
            await self.resync()
            return
        self.seq = seq
        for row in message["rows"]:
            self.rows[row[SYM]] = row
            self.last_batch_ms = row[TS]
        for sym in message["removed"]:
            self.rows.pop(sym, None)
        changed = frozenset(row[SYM] for row in message["rows"])
        self.recent.append((seq, changed))
        self.behind |= changed
        if self.conflating(time.time() * 1000 - self.last_batch_ms):
            return
        if self.behind == changed:
            self.fan_out(seq, {row[SYM]: short_row(row) for row in message["rows"]})
        else:
            self.fan_out_snapshots(self.behind)
        self.behind = NOTHING
        self.fanned_at = time.monotonic()

    def conflating(self, lag_ms: float) -> bool:
        """True to hold this batch back: the hub is behind and sent something less than
        ``CONFLATE_SECONDS`` ago.

        A hub that falls behind the feed (batches older than ``LAG_MS`` when they arrive: a
        burst of connections, a busy core) would otherwise send every backlogged batch to
        every client and stay behind. Instead it folds them together and sends each client a
        ``snap`` of what changed, at most every ``CONFLATE_SECONDS``, until it has caught up:
        fewer, fresher frames, full rows (so no high or low is missed).
        """
        return lag_ms > LAG_MS and time.monotonic() - self.fanned_at < CONFLATE_SECONDS

    def on_symbols(self, symbols: list[dict[str, Any]]) -> None:
        self.set_symbols(symbols)
        frame = encode_symbols(symbols)
        for group in list(self.groups.values()):
            group.deliver(frame, self._stalled)

    async def resync(self) -> None:
        """Reload the store and send every client a snapshot of its symbols."""
        try:
            snap = await self.store.load()
        except Exception as exc:
            log.warning("hub: store unavailable (%s); will resync on the next batch", exc)
            self.epoch = ""  # the next batch does not follow on: it triggers another resync
            return
        self.apply_snapshot(snap)
        self.synced.set()
        now = time.monotonic()
        for key, group in list(self.groups.items()):
            if key != NOTHING:
                group.sends.append((self.seq, now))
                group.deliver(self.snapshot(key), self._stalled)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.epoch, self.seq, self.rows = snap.epoch, snap.seq, snap.rows
        self.recent.clear()
        self.behind = NOTHING  # every client gets a full snap now
        self.last_batch_ms = snap.updated_ms

    def set_symbols(self, symbols: list[dict[str, Any]]) -> None:
        self.symbols = symbols
        self.known = {s["s"] for s in symbols}

    # Fan-out

    def fan_out_snapshots(self, changed: frozenset[str]) -> None:
        """Send every client a ``snap`` of its symbols among ``changed`` (conflated batches)."""
        now = time.monotonic()
        for key, group in list(self.groups.items()):
            symbols = changed if key is None else changed & key
            if symbols:
                group.sends.append((self.seq, now))
                group.deliver(self.snapshot(symbols), self._stalled)

    def fan_out(self, seq: int, fragments: dict[str, bytes]) -> None:
        """Send batch ``seq`` to every client whose symbols changed, one frame per subscription."""
        now = time.monotonic()
        for key, group in list(self.groups.items()):
            if key is None:
                parts: Iterable[bytes] = fragments.values()
            else:
                parts = [frag for sym, frag in fragments.items() if sym in key]
                if not parts:
                    continue
            group.sends.append((seq, now))
            group.deliver(encode_quotes(seq, parts), self._stalled)

    # Slow clients

    async def watch_acks(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            self.pause_laggards(now)
            if self.behind and now - self.fanned_at >= CONFLATE_SECONDS:  # no batch came to flush them
                self.fan_out_snapshots(self.behind)
                self.behind, self.fanned_at = NOTHING, now

    def pause_laggards(self, now: float) -> None:
        """Hold every acknowledging client that sat on a frame for over ``ACK_TIMEOUT``.

        A client lags when a frame newer than both its last ack and its joining snap was sent
        to it more than ``ACK_TIMEOUT`` ago: one comparison per client per sweep.
        """
        for group in list(self.groups.values()):
            overdue = group.overdue_seq(now)
            if not overdue:
                continue
            lagging = [
                c for clients in (group.clients, group.direct) for c in clients
                if c.acked is not None and overdue > max(c.acked, c.joined)
            ]
            for client in lagging:
                client.paused_at = group.sent_seq
                self._hold(client)
            if lagging:
                log.info("hub: paused %d client(s) that stopped reading", len(lagging))

    def ack(self, client: Client, seq: int) -> None:
        """Record that ``client`` applied everything up to ``seq``; if it was paused for lagging
        and has now read all it was sent before the pause, it catches up (a ``snap``)."""
        client.acked = seq
        if client.paused_at is not None and seq >= client.paused_at:
            client.paused_at = None
            self._catch_up(client)

    def _stalled(self, client: Client, step: Coroutine[Any, Any, None], awaited: Any) -> None:
        """The server suspended a send to ``client``: hold it until that send completes."""
        client.stall = asyncio.create_task(self._finish_stalled(client, step, awaited))
        self._hold(client)

    async def _finish_stalled(self, client: Client, step: Coroutine[Any, Any, None], awaited: Any) -> None:
        try:
            await finish(step, awaited)
        except Exception:
            return  # the connection is gone; its consumer leaves
        finally:
            client.stall = None
        self._catch_up(client)

    def _hold(self, client: Client) -> None:
        self._take_out(client)
        self.paused.add(client)

    def _catch_up(self, client: Client) -> None:
        """A held client may take frames again: back in its group, with a ``snap``."""
        if client.held or client not in self.paused:
            return
        self.paused.discard(client)
        self._file(client)
        if client.symbols == NOTHING:
            return
        frame = self.snapshot(client.symbols)
        if client.link is not None:
            client.link.write(text_frame(frame.encode()))
        else:
            send_now(client, text_message(frame), self._stalled)

    # What consumers call

    def hello(self, client: Client) -> str:
        """The ``hello`` for ``client``: acks are asked of it unless its server already reports
        its buffer (daphne's fast path: Twisted's backpressure)."""
        ack_ms = 0 if client.link is not None else ACK_INTERVAL_MS
        return encode_hello(self.epoch, self.seq, self.node, self.symbols, ack_ms)

    def join(self, client: Client) -> None:
        if client.link is not None:  # Twisted's buffer full, then drained
            client.link.on_blocked = lambda: self._hold(client)
            client.link.on_drained = lambda: self._catch_up(client)
        self._file(client)

    def leave(self, client: Client) -> None:
        self.paused.discard(client)
        self._take_out(client)
        if client.link is not None:
            client.link.on_blocked = client.link.on_drained = None
        if client.stall is not None:
            client.stall.cancel()

    def snapshot(self, symbols: Key) -> str:
        """A ``snap`` of ``symbols`` (None: all) as they are now."""
        rows = self.rows.values() if symbols is None else [self.rows[s] for s in sorted(symbols) if s in self.rows]
        return encode_snap(self.epoch, self.seq, rows)

    def subscribe(self, client: Client, symbols: Iterable[str] | None) -> tuple[str, list[str]]:
        """Add symbols to a client (None: the whole board).

        Returns:
            The ``snap`` frame of the symbols added, and the unknown symbols that were not added.

        Raises:
            ProtocolError: the client would hold more than ``MAX_SYMBOLS`` symbols; nothing changed.
        """
        if symbols is None:
            self._move(client, None)
            return self.snapshot(None), []
        wanted = set(symbols)
        unknown = sorted(wanted - self.known)
        added = frozenset(wanted & self.known)
        if client.symbols is not None:
            combined = client.symbols | added
            if len(combined) > MAX_SYMBOLS:
                raise ProtocolError(ERR_TOO_MANY_SYMBOLS, f"at most {MAX_SYMBOLS} symbols per connection")
            self._move(client, combined)
        return self.snapshot(added), unknown

    def unsubscribe(self, client: Client, symbols: Iterable[str] | None) -> None:
        """Remove symbols from a client (None: all of them). From the whole board, "*" minus
        some symbols becomes the explicit list of the others."""
        if symbols is None:
            self._move(client, NOTHING)
            return
        current = client.symbols if client.symbols is not None else frozenset(self.known)
        self._move(client, current - set(symbols))

    def resume(self, client: Client, epoch: str, seq: int, symbols: Iterable[str] | None) -> tuple[str, list[str]]:
        """Re-subscribe after a reconnect: when this hub still holds every batch after ``seq`` of
        the same epoch, a ``snap`` of just the subscribed symbols that changed since (full rows,
        so a high or low reached meanwhile is not missed); else a ``snap`` of all of them."""
        snap, unknown = self.subscribe(client, symbols)
        oldest = self.recent[0][0] if self.recent else self.seq + 1
        if epoch != self.epoch or seq > self.seq or seq + 1 < oldest:
            return snap, unknown
        changed = set().union(*(syms for batch_seq, syms in self.recent if batch_seq > seq))
        if client.symbols is not None:
            changed &= client.symbols
        return self.snapshot(frozenset(changed)), unknown

    def feed_age(self) -> float | None:
        """Seconds since the newest quote this hub has seen, None before any."""
        return None if not self.last_batch_ms else max(0.0, time.time() - self.last_batch_ms / 1000)

    @property
    def client_count(self) -> int:
        return sum(len(g.clients) + len(g.direct) for g in self.groups.values()) + len(self.paused)

    @property
    def direct_count(self) -> int:
        """Clients on daphne's fast path (``ticker.fastpath``)."""
        return sum(len(g.direct) for g in self.groups.values())

    def _file(self, client: Client) -> None:
        if client.held:
            return  # filed again when it catches up
        client.joined = self.seq  # it gets (or got) a snap as of now
        group = self.groups.get(client.symbols)
        if group is None:
            group = self.groups[client.symbols] = Group()
        (group.clients if client.link is None else group.direct).add(client)

    def _take_out(self, client: Client) -> None:
        group = self.groups.get(client.symbols)
        if group is not None:
            group.clients.discard(client)
            group.direct.discard(client)
            if not group.clients and not group.direct:
                del self.groups[client.symbols]

    def _move(self, client: Client, symbols: Key) -> None:
        self._take_out(client)
        client.symbols = symbols
        self._file(client)
