"""The hub: one per server process, between the channel layer and the process's connections.

Fan-out policy (DESIGN.md §3):

- **One subscription per process.** The hub's listener is the only member of the
  ``ticker.quotes`` group in this process; browsers never join a group. The layer fans a
  batch out across processes, the hub fans it out to local connections.
- **Encode once per batch.** Each changed row is encoded once (orjson) as a ``q`` fragment;
  connections with the same subscription share one frame built by joining fragments.
- **Only the latest state matters.** The hub keeps the full row of every symbol, so a new
  or resuming connection gets a ``snap``; it also keeps the fragments of the last
  ``RECENT_BATCHES`` batches so a client that reconnects quickly gets just what changed.
- **Gaps are repaired, not hidden.** A batch whose seq does not follow the last one (a new
  feed epoch, a layer outage, a message the layer dropped) makes the hub reload the quote
  store and send every connection a ``snap``.
- **No backpressure from the server.** Neither daphne nor uvicorn tells the application how
  much is buffered for a connection; a send never blocks.
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

SendText = Callable[[str], Awaitable[None]]


class Client:
    """A connection as the hub sees it: how to send it text, and what it subscribed to.

    ``symbols`` is None for the whole board, else the set of tickers.
    """

    __slots__ = ("send", "symbols")

    def __init__(self, send: SendText) -> None:
        self.send = send
        self.symbols: frozenset[str] | None = frozenset()


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
        self.fragments: dict[str, bytes] = {}
        self.symbols: list[dict[str, Any]] = []
        self.known: set[str] = set()
        self.recent: deque[tuple[int, frozenset[str]]] = deque(maxlen=RECENT_BATCHES)  # symbols per batch
        self.by_key: dict[frozenset[str] | None, set[Client]] = {}
        self.last_batch_ms = 0
        self.synced = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # Lifecycle

    async def start(self) -> None:
        """Load the symbol list and start listening; the first resync happens on the first join."""
        self.set_symbols(await sync_to_async(load_wire_symbols)())
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

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
            fragments[sym] = self.fragments[sym] = short_row(row)
            self.last_batch_ms = row[TS]
        for sym in message["removed"]:
            self.rows.pop(sym, None)
            self.fragments.pop(sym, None)
        self.recent.append((seq, frozenset(fragments)))
        await self.fan_out(seq, fragments)

    async def on_symbols(self, symbols: list[dict[str, Any]]) -> None:
        self.set_symbols(symbols)
        frame = encode_symbols(symbols)
        for clients in list(self.by_key.values()):
            for client in tuple(clients):
                await self._send(client, frame)

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
        for key, clients in list(self.by_key.items()):
            if clients and key != frozenset():
                frame = self.snapshot(key)
                for client in tuple(clients):
                    await self._send(client, frame)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.epoch, self.seq, self.rows = snap.epoch, snap.seq, snap.rows
        self.fragments = {sym: short_row(row) for sym, row in self.rows.items()}
        self.recent.clear()
        self.last_batch_ms = snap.updated_ms

    def set_symbols(self, symbols: list[dict[str, Any]]) -> None:
        self.symbols = symbols
        self.known = {s["s"] for s in symbols}

    # Fan-out

    async def fan_out(self, seq: int, fragments: dict[str, bytes]) -> None:
        """Send batch ``seq`` to every client whose symbols changed, one frame per subscription."""
        for key, clients in list(self.by_key.items()):
            if not clients:
                continue
            if key is None:
                parts: Iterable[bytes] = fragments.values()
            else:
                parts = [frag for sym, frag in fragments.items() if sym in key]
                if not parts:
                    continue
            frame = encode_quotes(seq, parts)
            for client in tuple(clients):
                await self._send(client, frame)

    async def _send(self, client: Client, frame: str) -> None:
        try:
            await client.send(frame)
        except Exception:  # the connection is going away; its consumer will leave
            log.debug("hub: send failed", exc_info=True)

    # What consumers call

    def hello(self) -> str:
        return encode_hello(self.epoch, self.seq, self.node, self.symbols)

    def join(self, client: Client) -> None:
        self._file(client)

    def leave(self, client: Client) -> None:
        clients = self.by_key.get(client.symbols)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self.by_key[client.symbols]

    def snapshot(self, symbols: frozenset[str] | None) -> str:
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
            self._move(client, frozenset())
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
        return sum(len(c) for c in self.by_key.values())

    def _file(self, client: Client) -> None:
        self.by_key.setdefault(client.symbols, set()).add(client)

    def _move(self, client: Client, symbols: frozenset[str] | None) -> None:
        self.leave(client)
        client.symbols = symbols
        self._file(client)
