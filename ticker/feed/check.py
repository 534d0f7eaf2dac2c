"""A look at a vendor's stream without the feed: connect, listen a few seconds, tally per symbol.

``manage.py feedcheck`` runs it, for people with a network who want to see what a vendor sends
before they point the feed at it. No store, no channel layer, no lease: just the adapter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from .sources import Listing, Tick
from .vendors.base import VendorStream

CONNECT_SECONDS = 30.0  # a first connection within this, or give up


@dataclass(slots=True)
class Seen:
    """What arrived for one symbol."""

    trades: int = 0
    quotes: int = 0
    last: float | None = None
    at_ms: int = 0


class Tally:
    """A sink (``streams.Sink``) that counts, and prints the first update of each symbol."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.seen: dict[str, Seen] = {}

    def _first(self, symbol: str, what: str) -> Seen:
        if symbol not in self.seen:
            self.out.write(f"first update of {symbol}: {what}\n")
            self.seen[symbol] = Seen()
        return self.seen[symbol]

    def trade(self, tick: Tick) -> None:
        seen = self._first(tick.symbol, f"trade at {tick.price!r}")
        seen.trades += 1
        seen.last, seen.at_ms = tick.price, max(seen.at_ms, tick.at_ms)

    def heard(self, symbol: str, at_ms: int) -> None:
        seen = self._first(symbol, "quote")
        seen.quotes += 1
        seen.at_ms = max(seen.at_ms, at_ms)

    def link(self, up: bool) -> None:
        """Nothing to tally: the stream counts its connections, which the table shows."""


def stamp(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3] if at_ms else "-"


async def check(stream: VendorStream, listings: Sequence[Listing], seconds: float, out: TextIO) -> Tally:
    """Listen to ``stream`` for ``seconds`` from its first connection; print a table per symbol.

    Raises:
        SourceRefused: the vendor refused us.
        TimeoutError: no connection within ``CONNECT_SECONDS``.
    """
    tally = Tally(out)
    stream.set_listings(listings, {})
    task = asyncio.create_task(stream.run(tally))
    up = asyncio.create_task(stream.up.wait())
    try:
        await asyncio.wait({task, up}, timeout=CONNECT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if not up.done() and not task.done():
            raise TimeoutError(f"no connection within {CONNECT_SECONDS:g} s")
        started = time.monotonic()
        await asyncio.wait({task}, timeout=seconds)
        if task.done():
            task.result()
        elapsed = time.monotonic() - started
    finally:
        task.cancel()
        up.cancel()
        await asyncio.gather(task, up, return_exceptions=True)
    out.write(f"\n{stream.name} at {stream.url}: {elapsed:.1f} s, {stream.connections} connection(s), "
              f"{stream.malformed} unreadable message(s), {getattr(stream, 'gaps', 0)} lost (sequence gaps)\n")
    out.write(f"{'symbol':<12} {'vendor':<14} {'trades':>7} {'quotes':>7} {'last':>16}  last update (UTC)\n")
    for item in listings:
        seen = tally.seen.get(item.ticker, Seen())
        last = "-" if seen.last is None else repr(seen.last)
        out.write(f"{item.ticker:<12} {stream.key(item):<14} {seen.trades:>7} {seen.quotes:>7} {last:>16}  "
                  f"{stamp(seen.at_ms)}\n")
    return tally
