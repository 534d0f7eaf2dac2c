"""The benchmark market: the same 50 symbols and the same simulated ticks for every baseline.

Every server compared in the benchmark must carry the same load, so they all build their market
here, from the pure modules of the application (``ticker.feed.sources.SimulatedMarket`` for the
ticks, ``ticker.feed.quotes.QuoteBook`` for the day's rows, ``ticker.protocol`` for the row
layout): the first 42 listings of ``ticker/data/symbols.csv`` plus 8 made-up ones, one seeded
random walk. Two ways to consume it:

- ``TickMarket``: one message per tick, what a tutorial feed publishes (the stock Channels path);
- ``BatchedMarket``: ticks coalesced into ``batch_ms`` batches exactly as ``ticker.feed.publisher`` does
  (the latest row of each symbol that traded, ``seq`` rising by one per batch that changed
  something); the in-process baselines (plain ``websockets``, picows and python-socketio) share it.

``Subscriptions`` is who gets which frame of a batch, for the in-process servers that speak v1.

Nothing here imports Django, Channels or a server library.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from ticker.feed.quotes import QuoteBook
from ticker.feed.sources import Listing, SimulatedMarket
from ticker.protocol import LAST, SYM, TS, VOLUME, Row, short_row

SYMBOLS_CSV = Path(__file__).resolve().parents[2] / "ticker" / "data" / "symbols.csv"
FROM_CSV = 42  # the first 42 listings of the CSV, then made-up ones

# Made-up listings that complete the board to 50: (ticker, name, exchange, prev_close, volatility).
EXTRA_LISTINGS: tuple[tuple[str, str, str, float, float], ...] = (
    ("ACME", "Acme Corp.", "NYSE", 52.10, 0.35),
    ("GLBX", "Globex Corp.", "NASDAQ", 87.45, 0.40),
    ("INIT", "Initech Inc.", "NASDAQ", 23.80, 0.45),
    ("UMBR", "Umbrella Holdings", "NYSE", 141.20, 0.30),
    ("CYDN", "Cyberdyne Systems", "NASDAQ", 312.65, 0.55),
    ("STRK", "Stark Industries", "NYSE", 498.90, 0.28),
    ("WAYN", "Wayne Enterprises", "NYSE", 176.35, 0.22),
    ("SOYL", "Soylent Corp.", "NYSE", 12.05, 0.60),
)

DEFAULT_SYMBOLS = 50
DEFAULT_RATE = 200.0
DEFAULT_BATCH_MS = 100
DEFAULT_SEED = 4242


@dataclass(frozen=True, slots=True)
class MarketSymbol:
    """One listed symbol: what the simulation needs and what ``hello`` shows."""

    ticker: str
    name: str
    exchange: str
    prev_close: float
    volatility: float

    @property
    def listing(self) -> Listing:
        return Listing(self.ticker, self.prev_close, 0.01, self.volatility)

    def hello_entry(self) -> dict[str, Any]:
        """The symbol as listed in a v1 ``hello`` frame."""
        return {"s": self.ticker, "name": self.name, "ex": self.exchange, "ccy": "USD", "tick": 0.01,
                "prev": self.prev_close, "paused": False}


def load_symbols(count: int = DEFAULT_SYMBOLS) -> list[MarketSymbol]:
    """The first ``count`` symbols of the benchmark board (deterministic).

    Up to 42 come from the CSV, the next 8 are ``EXTRA_LISTINGS``; beyond 50, numbered
    made-up listings (``XS051``…) keep the board deterministic at any size.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    with open(SYMBOLS_CSV, newline="") as fh:
        out = [
            MarketSymbol(rec["ticker"], rec["name"], rec["exchange"], float(rec["prev_close"]),
                         float(rec["volatility"]))
            for rec in csv.DictReader(fh)
        ][:FROM_CSV]
    out += [MarketSymbol(*extra) for extra in EXTRA_LISTINGS]
    n = len(out)
    while len(out) < count:
        n += 1
        out.append(MarketSymbol(f"XS{n:03d}", f"Made-up Listing {n}", "NYSE", 20.0 + (n * 7.3) % 400, 0.35))
    return out[:count]


def new_epoch() -> str:
    """An id for one market run (same shape as ``ticker.feed.publisher.new_epoch``)."""
    return f"{int(time.time()):x}-{secrets.token_hex(3)}"


def node_name(kind: str) -> str:
    """What a server calls itself in ``hello``: ``kind@host:pid``."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


def hello_message(epoch: str, seq: int, node: str, symbols: list[MarketSymbol]) -> dict[str, Any]:
    """A v1 ``hello`` (the baselines enforce no limits, so ``limits`` is empty)."""
    return {"t": "hello", "v": 1, "epoch": epoch, "seq": seq, "node": node,
            "symbols": [s.hello_entry() for s in symbols], "limits": {}}


def wall_ms() -> int:
    """Wall-clock epoch milliseconds: the ``ts_ms`` of a published price."""
    return int(time.time() * 1000)


def q_row(row: Row) -> list[Any]:
    """The short ``q`` row ``[sym, last, volume, ts_ms]`` of a full row."""
    return [row[SYM], row[LAST], row[VOLUME], row[TS]]


class _Market:
    def __init__(self, count: int, rate: float, seed: int) -> None:
        self.symbols = load_symbols(count)
        self.sim = SimulatedMarket(rate=rate, seed=seed)
        self.sim.set_listings([s.listing for s in self.symbols], {})
        self.book = QuoteBook()
        self.book.set_listings([s.listing for s in self.symbols], {}, wall_ms())
        self.epoch = new_epoch()
        self.seq = 0


class TickMarket(_Market):
    """One published message per tick: ``seq`` rises by one per tick."""

    def ticks(self, now: float) -> list[tuple[int, list[Any]]]:
        """The ticks up to ``now`` (monotonic seconds), each as ``(seq, q_row)`` stamped now."""
        out = []
        for tick in self.sim.ticks(now):
            self.seq += 1
            (row,) = self.book.apply([tick], wall_ms())
            out.append((self.seq, q_row(row)))
        return out


@dataclass(slots=True)
class Batch:
    """One coalesced batch: the changed rows, encoded once, with frames for watchlists on demand."""

    seq: int
    rows: list[list[Any]]  # short rows, one per changed symbol
    fragments: dict[str, bytes]  # symbol -> pre-encoded short row
    _frames: dict[frozenset[str] | None, str | None] = field(default_factory=dict)

    @property
    def frame(self) -> str:
        """The whole-board ``q`` frame (encoded once)."""
        return self.frame_for(None) or ""  # a batch always has at least one row

    def payload(self) -> dict[str, Any]:
        """The ``q`` frame as a dict (for libraries that encode it themselves)."""
        return {"t": "q", "seq": self.seq, "q": self.rows}

    def frame_for(self, symbols: frozenset[str] | None) -> str | None:
        """The ``q`` frame for a subscription set (None: the whole board), or None when the batch
        changed none of its symbols. Identical sets share one frame."""
        try:
            return self._frames[symbols]
        except KeyError:
            pass
        if symbols is None:
            parts = list(self.fragments.values())
        else:
            parts = [frag for sym, frag in self.fragments.items() if sym in symbols]
        text = (b'{"t":"q","seq":%d,"q":[%b]}' % (self.seq, b",".join(parts))).decode() if parts else None
        self._frames[symbols] = text
        return text


class BatchedMarket(_Market):
    """Ticks coalesced into batches like ``ticker.feed.publisher``: ``seq`` rises by one per batch."""

    def batch(self, now: float) -> Batch | None:
        """Fold the ticks up to ``now`` (monotonic seconds) in; the next batch, or None if nothing traded."""
        rows = self.book.apply(self.sim.ticks(now), wall_ms())
        if not rows:
            return None
        self.seq += 1
        return Batch(self.seq, [q_row(r) for r in rows], {r[SYM]: short_row(r) for r in rows})

    async def run(self, publish: Callable[[Batch], Awaitable[None] | None], batch_ms: int = DEFAULT_BATCH_MS) -> None:
        """Publish a batch every ``batch_ms`` until cancelled (the schedule of ``Feed.publish_forever``:
        a late batch does not make the next ones burst to catch up)."""
        loop = asyncio.get_running_loop()
        period = batch_ms / 1000
        self.sim.ticks(time.monotonic())  # start the market's clock
        next_at = loop.time()
        while True:
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()
            batch = self.batch(time.monotonic())
            if batch is not None:
                result = publish(batch)
                if result is not None:
                    await result


C = TypeVar("C", bound=Hashable)


class Subscriptions(Generic[C]):
    """Who gets which frame of a batch: whole-board connections in one set, watchlist connections
    grouped by subscription set (identical sets share one frame). A connection that joins is on
    the whole board until it sends ``{"op":"sub","symbols":[...]}``; ``"symbols":"*"`` puts it back."""

    def __init__(self, known: Iterable[str]) -> None:
        self.known = frozenset(known)
        self.board: set[C] = set()
        self.watch: dict[C, frozenset[str]] = {}
        self.groups: dict[frozenset[str], set[C]] = {}

    def join(self, conn: C) -> None:
        self.board.add(conn)

    def leave(self, conn: C) -> None:
        self.board.discard(conn)
        self._leave_watchlist(conn)

    def _leave_watchlist(self, conn: C) -> None:
        symbols = self.watch.pop(conn, None)
        if symbols is not None:
            group = self.groups[symbols]
            group.discard(conn)
            if not group:
                del self.groups[symbols]

    def subscribe(self, conn: C, symbols: object) -> None:
        """Apply a ``sub``: "*" is the whole board, a list replaces the watchlist."""
        if symbols == "*":
            self._leave_watchlist(conn)
            self.board.add(conn)
            return
        if not isinstance(symbols, list):
            return
        wanted = frozenset(str(s).upper() for s in symbols) & self.known
        if not wanted:
            return
        self.board.discard(conn)
        self._leave_watchlist(conn)
        self.watch[conn] = wanted
        self.groups.setdefault(wanted, set()).add(conn)

    def handle(self, conn: C, message: str | bytes) -> bytes | None:
        """Apply a client's message: ``sub`` changes its subscription, ``ping`` gets a ``pong``,
        returned for the caller to send; anything else is ignored (None)."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(msg, dict):
            return None
        if msg.get("op") == "sub":
            self.subscribe(conn, msg.get("symbols"))
        elif msg.get("op") == "ping":
            return orjson.dumps({"t": "pong", "id": msg.get("id")})
        return None

    def frames(self, batch: Batch) -> Iterator[tuple[str, set[C]]]:
        """One batch as ``(frame, connections)``: the whole board's, then one per distinct
        watchlist that it touches."""
        if self.board:
            yield batch.frame, self.board
        for symbols, conns in self.groups.items():
            frame = batch.frame_for(symbols)
            if frame is not None:
                yield frame, conns


def batched_market_parser(description: str, port: int) -> argparse.ArgumentParser:
    """The command line shared by the servers that run a ``BatchedMarket`` in process."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="ticks per second, whole market")
    parser.add_argument("--batch-ms", type=int, default=DEFAULT_BATCH_MS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser
