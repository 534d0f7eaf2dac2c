"""What the board is told of the feed's source: how long a symbol may go without an update before
it shows stale, and where the prices come from (``describe``, the page's header).

The mark is the feed's, carried in every batch (``stale_ms``), so the web processes judge by the
source actually running (docs/SOURCES.md, "Freshness"):

- the simulated market and a replay tick every active symbol several times a second: 15 s;
- a vendor's stocks (Alpaca) may go quiet for a while between trades, above all off the busiest
  names: 60 s;
- a crypto exchange's products (Coinbase, Binance) trade round the clock: 30 s.

``TICKER_STALE_MS`` replaces the source's mark (0: keep it).
"""

from __future__ import annotations

from .sources import CsvReplay, SimulatedMarket, Source
from .streams import Pushed

TICKING_MS = 15_000  # a source that makes its own ticks (simulated, replay)
VENDOR_MS = {"alpaca": 60_000, "coinbase": 30_000, "binance": 30_000}
OTHER_VENDOR_MS = 60_000  # a stream this table does not name


def stale_mark(source: Source, setting: int = 0) -> int:
    """The mark in ms for ``source``: ``setting`` when it is positive, else the source's own."""
    if setting > 0:
        return setting
    if isinstance(source, Pushed):
        return VENDOR_MS.get(getattr(source.stream, "name", ""), OTHER_VENDOR_MS)
    return TICKING_MS


def describe(source: Source) -> str:
    """Where ``source``'s prices come from, in the words of the board's header."""
    if isinstance(source, Pushed):
        return getattr(source.stream, "label", "") or getattr(source.stream, "name", "a vendor's stream")
    if isinstance(source, SimulatedMarket):
        return "simulated market"
    if isinstance(source, CsvReplay):
        return f"replay at {source.speed:g}×"
    return type(source).__name__
