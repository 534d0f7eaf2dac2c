"""One-minute candles built from published quotes, written to the database in batches."""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_MS = 60_000


@dataclass(slots=True)
class Bar:
    """Open, high, low, close and volume of one symbol over the minute starting at ``start_ms``."""

    symbol: str
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int


class CandleBook:
    """The open candle of every symbol, and which candles changed since the last ``take_changed``."""

    def __init__(self) -> None:
        self.bars: dict[str, Bar] = {}
        self.changed: dict[tuple[str, int], Bar] = {}

    def add(self, symbol: str, price: float, volume: int, ts_ms: int) -> None:
        """Fold one published price (with the volume traded since the previous one) in."""
        start = ts_ms - ts_ms % MINUTE_MS
        bar = self.bars.get(symbol)
        if bar is None or bar.start_ms != start:
            bar = Bar(symbol, start, price, price, price, price, volume)
            self.bars[symbol] = bar
        else:
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.close = price
            bar.volume += volume
        self.changed[(symbol, start)] = bar

    def take_changed(self) -> list[Bar]:
        """The candles to upsert: each changed one once, as it is now."""
        out = [Bar(b.symbol, b.start_ms, b.open, b.high, b.low, b.close, b.volume) for b in self.changed.values()]
        self.changed.clear()
        return out
