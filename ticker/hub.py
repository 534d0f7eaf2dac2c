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
- **Slow clients are skipped, then resynced.** Neither daphne nor uvicorn tells the
  application how much is buffered for a connection, and a send never blocks, so the hub
  cannot see a client that stopped reading. Clients that acknowledge (``ack``, about once a
  second: the page does) are watched: one that has not acknowledged a frame sent to it for
  ``ACK_TIMEOUT`` seconds is paused (sent nothing, so the server buffers nothing more for it)
  until an ``ack`` shows it has read everything sent before the pause; then it gets a ``snap``
  and goes on. Its state is at most the latest row per symbol: the hub's. Clients that never
  acknowledge are left to the server's keepalive ping timeout, which closes a connection that
  stopped reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async

from . import bus
from .fastpath import DirectLink, text_frame
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
ACK_TIMEOUT = 3.0  # seconds a sent frame may stay unacknowledged before the client is paused
SWEEP_SECONDS = 0.5

Send = Callable[[dict[str, Any]], Awaitable[None]]
Key = frozenset[str] | None  # a subscription: some symbols, or None for the whole board
NOTHING: frozenset[str] = frozenset()


def text_message(frame: str) -> dict[str, Any]:
    """The ASGI message that sends ``frame``; built once and given to every recipient."""
    return {"type": "websocket.send", "text": frame}


class Client:
    """A connection as the hub sees it: its ASGI ``send`` (or, on daphne's fast path, its
    ``DirectLink``), its subscription, its acknowledgements."""

    __slots__ = ("acked", "joined", "link", "paused_at", "send", "symbols")

    def __init__(self, send: Send, link: DirectLink | None = None) -> None:
        self.send = send
        self.link = link
        self.symbols: Key = NOTHING
        self.acked: int | None = None  # the last seq it acknowledged; None: it does not ack
        self.joined = 0  # the seq of the snap it got when it joined its group
        self.paused_at: int | None = None  # the last seq sent to it before it was paused


class Group:
    """The clients with the same subscription, and when recent frames were sent to them.

    ``clients`` get frames through ASGI ``send``; ``direct`` ones through their ``DirectLink``.
    """

    __slots__ = ("clients", "direct", "sends")

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.direct: set[Client] = set()
        self.sends: deque[tuple[int, float]] = deque(maxlen=64)  # (seq, monotonic time) per frame

    @property
    def sent_seq(self) -> int:
        return self.sends[-1][0] if self.sends else 0

    def overdue_seq(self, now: float) -> int:
        """The newest seq sent to this group more than ``ACK_TIMEOUT`` ago (0 if none)."""
        for seq, at in reversed(self.sends):
            if now - at > ACK_TIMEOUT:
                return seq
        return 0


def load_wire_symbols() -> list[dict[str, Any]]:
    return [s.as_wire() for s in Symbol.objects.all()]


class Hub:
    """Receives batches and symbol changes from the layer and fans them out to local clients."""

    def __init__(self, store: QuoteStore, node: str, listener: bus.Listener | None = None) -> None:
        self.store = store
        self.node = node
        self.listener = listener or bus.Listener([bus.QUOTES_GROUP, bus.CONTROL_GROUP])
        self.epoch = ""
        self.seq = 0
        self.rows: dict[str, Row] = {}
        self.symbols: list[dict[str, Any]] = []
        self.known: set[str] = set()
        self.recent: deque[tuple[int, frozenset[str]]] = deque(maxlen=RECENT_BATCHES)  # symbols per batch
        self.groups: dict[Key, Group] = {}
        self.paused: set[Client] = set()
        self.last_batch_ms = 0
        self.synced = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    # Lifecycle

    async def start(self) -> None:
        """Load the symbol list and start listening; the first resync happens on the first join."""
        self.set_symbols(await sync_to_async(load_wire_symbols)())
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
                    await self.on_symbols(message["symbols"])
                elif kind == bus.REJOINED:
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
        fragments: dict[str, bytes] = {}
        for row in message["rows"]:
            sym = row[SYM]
            self.rows[sym] = row
            fragments[sym] = short_row(row)
            self.last_batch_ms = row[TS]
        for sym in message["removed"]:
            self.rows.pop(sym, None)
        self.recent.append((seq, frozenset(fragments)))
        await self.fan_out(seq, fragments)

    async def on_symbols(self, symbols: list[dict[str, Any]]) -> None:
        self.set_symbols(symbols)
        frame = encode_symbols(symbols)
        for group in list(self.groups.values()):
            await self._deliver(group, frame)

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
                await self._deliver(group, self.snapshot(key))

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.epoch, self.seq, self.rows = snap.epoch, snap.seq, snap.rows
        self.recent.clear()
        self.last_batch_ms = snap.updated_ms

    def set_symbols(self, symbols: list[dict[str, Any]]) -> None:
        self.symbols = symbols
        self.known = {s["s"] for s in symbols}

    # Fan-out

    async def fan_out(self, seq: int, fragments: dict[str, bytes]) -> None:
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
            await self._deliver(group, encode_quotes(seq, parts))

    @staticmethod
    async def _deliver(group: Group, frame: str) -> None:
        """Send one frame to every client of a group: built once, sent as it is."""
        if group.clients:
            # A plain loop: gather() or a task per client costs more and daphne's send never
            # suspends anyway (DESIGN.md §3). A failing send means the connection is going
            # away: its consumer will leave.
            message = text_message(frame)
            for client in tuple(group.clients):
                try:
                    await client.send(message)
                except Exception:
                    log.debug("hub: send failed", exc_info=True)
        if group.direct:
            data = text_frame(frame.encode())
            for client in tuple(group.direct):
                client.link.write(data)  # type: ignore[union-attr]

    # Slow clients

    async def watch_acks(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.pause_laggards(time.monotonic())

    def pause_laggards(self, now: float) -> None:
        """Pause every acknowledging client that sat on a frame for over ``ACK_TIMEOUT``.

        A client lags when a frame newer than both its last ack and its joining snap was sent
        to it more than ``ACK_TIMEOUT`` ago: one comparison per client per sweep.
        """
        for group in list(self.groups.values()):
            overdue = group.overdue_seq(now)
            if not overdue:
                continue
            lagging = [c for c in group.clients if c.acked is not None and overdue > max(c.acked, c.joined)]
            for client in lagging:
                self._take_out(client)
                client.paused_at = group.sent_seq
                self.paused.add(client)
            if lagging:
                log.info("hub: paused %d client(s) that stopped reading", len(lagging))

    def ack(self, client: Client, seq: int) -> str | None:
        """Record that ``client`` applied everything up to ``seq``.

        Returns:
            A ``snap`` to send when this ack shows a paused client has read all it was sent
            before the pause: it is filed back and goes on from there. Else None.
        """
        client.acked = seq
        if client.paused_at is None or seq < client.paused_at:
            return None
        client.paused_at = None
        self.paused.discard(client)
        self._file(client)
        return self.snapshot(client.symbols)

    # What consumers call

    def hello(self) -> str:
        return encode_hello(self.epoch, self.seq, self.node, self.symbols)

    def join(self, client: Client) -> None:
        if client.link is not None:
            client.link.on_blocked = lambda: self._block(client)
            client.link.on_drained = lambda: self._drain(client)
        self._file(client)

    def _block(self, client: Client) -> None:
        """Twisted's buffer for this connection is full: send it nothing until it drains."""
        self._take_out(client)
        self.paused.add(client)

    def _drain(self, client: Client) -> None:
        """The connection has drained: back in its group, with a ``snap`` of what it missed."""
        if client not in self.paused:
            return
        self.paused.discard(client)
        self._file(client)
        if client.symbols != NOTHING and client.link is not None:
            client.link.write(text_frame(self.snapshot(client.symbols).encode()))

    def leave(self, client: Client) -> None:
        self.paused.discard(client)
        self._take_out(client)
        if client.link is not None:
            client.link.on_blocked = client.link.on_drained = None

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
        if client.paused_at is not None or (client.link is not None and client.link.blocked):
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
