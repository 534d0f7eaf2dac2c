"""The day's state of every symbol, as published: the full rows of the protocol.

The feed coalesces the ticks of one batch before they become prices: a symbol that traded
several times in a batch publishes its last price and the summed volume. Open, high and low
are therefore taken over published prices, so the page, the snapshot and the candles agree.

A vendor's quote (a bid or ask) without a trade says the symbol is still quoted: ``touch``
refreshes its row's time, not its price, now and then (docs/SOURCES.md, "Freshness").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..protocol import HIGH, LAST, LOW, PREV_CLOSE, TS, VOLUME, Row
from .sources import Listing, Tick


def opening_row(listing: Listing, ts_ms: int) -> Row:
    """A symbol that has not traded yet: everything at its previous close, no volume."""
    p = listing.prev_close
    return [listing.ticker, p, p, p, p, p, 0, ts_ms]


class QuoteBook:
    """Latest full row per symbol; ``apply`` turns a batch of ticks into the changed rows."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def set_listings(self, listings: Sequence[Listing], known: Mapping[str, Row], ts_ms: int) -> list[Row]:
        """Keep the rows of symbols still listed, take ``known`` rows (from the store) for the
        others, and open the rest at their previous close. A changed previous close is applied.

        Returns:
            The rows to publish: new symbols, and those whose previous close changed.
        """
        rows: dict[str, Row] = {}
        changed: list[Row] = []
        for listing in listings:
            old = self.rows.get(listing.ticker)
            row = list(old or known.get(listing.ticker) or opening_row(listing, ts_ms))
            row[PREV_CLOSE] = listing.prev_close
            rows[listing.ticker] = row
            if old != row:
                changed.append(list(row))
        self.rows = rows
        return changed

    def apply(self, ticks: Iterable[Tick], ts_ms: int) -> list[Row]:
        """Fold one batch of ticks in; return the rows that changed (one per symbol).

        Only the last price of each symbol in the batch is published; volumes add up.
        """
        last: dict[str, float] = {}
        traded: dict[str, int] = {}
        for tick in ticks:
            if tick.symbol in self.rows:
                last[tick.symbol] = tick.price
                traded[tick.symbol] = traded.get(tick.symbol, 0) + tick.size
        changed = []
        for sym, price in last.items():
            row = self.rows[sym]
            row[LAST] = price
            row[HIGH] = max(row[HIGH], price)
            row[LOW] = min(row[LOW], price)
            row[VOLUME] += traded[sym]
            row[TS] = ts_ms
            changed.append(list(row))
        return changed

    def touch(self, symbols: Iterable[str], ts_ms: int, every_ms: int) -> list[Row]:
        """Symbols quoted without a trade: their rows are fresh as of ``ts_ms``, their prices and
        volumes unchanged. A row updated within ``every_ms`` is left as it is, so a symbol quoted
        many times a second costs one row every ``every_ms``.

        Returns:
            The rows refreshed.
        """
        changed = []
        for sym in symbols:
            row = self.rows.get(sym)
            if row is not None and row[TS] <= ts_ms - every_ms:
                row[TS] = ts_ms
                changed.append(list(row))
        return changed

    def last_prices(self) -> dict[str, float]:
        return {sym: row[LAST] for sym, row in self.rows.items()}
