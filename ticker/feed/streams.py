"""Sources that push: a stream runs on its own, connects, and hands over what arrives.

A pull source (``sources.Source``) is asked at every batch for the ticks since the previous
one. A ``Stream`` is the other kind: a vendor's connection that delivers trades when the
vendor sends them. ``Pushed`` makes a stream a pull source, so the feed (``publisher.Feed``)
batches, numbers, stores, publishes and builds candles from it exactly as from the simulated
market: the stream hands each trade to ``Pushed`` as it arrives, and the feed takes what has
gathered at its next batch. The feed runs the stream (``Pushed.run``) beside its own loops, and
stops with it if the stream gives up (``SourceRefused``).

A stream also says when its link to the vendor is up or down (``Sink.link``). A link down for
longer than ``DOWN_SECONDS`` (not a reconnect that comes straight back) is one the feed reports
in its batches, and the board shows every symbol of the source stale at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from .sources import Listing, Tick

DOWN_SECONDS = 2.0  # a link down this long is down: a quick reconnect is not reported


class SourceRefused(Exception):
    """The vendor refused the feed for a reason that retrying cannot fix (credentials that fail,
    a plan's connection limit): the feed stops and says why, instead of retrying in a loop."""


class Sink(Protocol):
    """Where a stream hands over what arrives."""

    def trade(self, tick: Tick) -> None:
        """A trade of one of the symbols the stream was given (``tick.symbol`` is our ticker)."""

    def heard(self, symbol: str, at_ms: int) -> None:
        """An update of ``symbol`` that is no trade (a quote): the vendor still sends it."""

    def link(self, up: bool) -> None:
        """The stream's link to its vendor is up (logged in, following its symbols) or down (lost,
        refused, or not open yet)."""


class Stream(Protocol):
    """What the feed asks of a source that pushes."""

    def set_listings(self, listings: Sequence[Listing], last_prices: dict[str, float]) -> None:
        """Replace the symbols to follow; a running stream follows the change on its open connection."""

    async def run(self, sink: Sink) -> None:
        """Connect and hand what arrives to ``sink`` until cancelled, reconnecting as needed.

        Raises:
            SourceRefused: the vendor refused us for good; nothing more will arrive.
        """


class Pushed:
    """A stream as the feed's (pull) source: what the stream hands over waits for the next batch."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.pending: list[Tick] = []
        self.quoted: dict[str, int] = {}  # symbol -> time of its last update that was no trade
        self.down_since: float | None = None  # monotonic time the link went down; None: up (or never said)

    def set_listings(self, listings: Sequence[Listing], last_prices: dict[str, float]) -> None:
        self.stream.set_listings(listings, last_prices)

    def trade(self, tick: Tick) -> None:
        self.pending.append(tick)

    def heard(self, symbol: str, at_ms: int) -> None:
        self.quoted[symbol] = max(at_ms, self.quoted.get(symbol, 0))

    def link(self, up: bool) -> None:
        if up:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = time.monotonic()

    def down(self, now: float) -> bool:
        """Whether the stream's link has been down for ``DOWN_SECONDS`` at ``now`` (monotonic)."""
        return self.down_since is not None and now - self.down_since >= DOWN_SECONDS

    def ticks(self, now: float) -> list[Tick]:
        """Every trade handed over since the previous call, in the order it arrived."""
        out, self.pending = self.pending, []
        return out

    def take_quoted(self) -> dict[str, int]:
        """The symbols heard from without a trade since the previous call, with the time of each."""
        out, self.quoted = self.quoted, {}
        return out

    async def run(self) -> None:
        """Run the stream until cancelled (the feed does, beside its own loops)."""
        await self.stream.run(self)
