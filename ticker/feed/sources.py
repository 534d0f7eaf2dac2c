"""Where ticks come from: a simulated market (the default) or a CSV replay.

Both are pure: the feed passes in the time and gets back the ticks that happened since the
last call, so they can be tested without a clock or a loop. Sources that push (a vendor's
stream) are in ``streams``.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

SECONDS_PER_TRADING_YEAR = 252 * 6.5 * 3600


@dataclass(frozen=True, slots=True)
class Listing:
    """What a source needs to know about one active symbol."""

    ticker: str
    prev_close: float
    tick_size: float = 0.01
    volatility: float = 0.3
    vendor: str = ""  # what a vendor's stream calls it; empty: the ticker

    @property
    def feed_symbol(self) -> str:
        return self.vendor or self.ticker


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade: ``size`` shares of ``symbol`` at ``price``, made at ``at_ms`` (epoch milliseconds,
    the vendor's time; 0 for a source without its own clock: the feed's batch time is taken)."""

    symbol: str
    price: float
    size: int
    at_ms: int = 0


class Source(Protocol):
    """What the feed asks of a tick source."""

    def set_listings(self, listings: Sequence[Listing], last_prices: dict[str, float]) -> None:
        """Replace the active symbols; a new one starts at its last known price or its previous close."""

    def ticks(self, now: float) -> list[Tick]:
        """The ticks that happened up to ``now`` (seconds, monotonic) since the previous call."""


def round_to_tick(price: float, tick_size: float) -> float:
    """Round a price to the symbol's tick size, never below one tick."""
    ticks = max(1, round(price / tick_size))
    decimals = max(0, -math.floor(math.log10(tick_size))) if tick_size < 1 else 0
    return round(ticks * tick_size, decimals)


class SimulatedMarket:
    """Geometric Brownian motion per symbol, with lot-sized volume and the odd jump.

    ``rate`` ticks a second are spread over the active symbols at random. Each tick moves
    its symbol by ``exp((mu - sigma²/2)·dt + sigma·√dt·Z)``, with ``dt`` the market time since
    that symbol's previous tick; ``speed`` compresses market time so that a demo board moves
    visibly (speed 60: one wall second is one market minute). With probability ``jump_prob``
    a tick also jumps by a normal ``jump_sigma`` shock. The same ``seed`` gives the same
    sequence of ticks for the same calls.
    """

    def __init__(
        self,
        *,
        rate: float = 50.0,
        seed: int | None = None,
        speed: float = 60.0,
        drift: float = 0.05,
        jump_prob: float = 0.002,
        jump_sigma: float = 0.02,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.speed = speed
        self.drift = drift
        self.jump_prob = jump_prob
        self.jump_sigma = jump_sigma
        self.rng = random.Random(seed)
        self.listings: dict[str, Listing] = {}
        self.prices: dict[str, float] = {}
        self.last_tick: dict[str, float] = {}
        self.owed = 0.0  # fractional ticks carried to the next call
        self.clock: float | None = None

    def set_listings(self, listings: Sequence[Listing], last_prices: dict[str, float]) -> None:
        self.listings = {item.ticker: item for item in listings}
        self.prices = {
            t: self.prices.get(t) or last_prices.get(t) or item.prev_close for t, item in self.listings.items()
        }
        self.last_tick = {t: self.last_tick.get(t, self.clock or 0.0) for t in self.listings}

    def step(self, listing: Listing, price: float, dt_seconds: float) -> float:
        """One GBM step (plus maybe a jump) over ``dt_seconds`` of wall time."""
        dt = max(dt_seconds, 1e-3) * self.speed / SECONDS_PER_TRADING_YEAR
        sigma = listing.volatility
        shock = (self.drift - sigma * sigma / 2) * dt + sigma * math.sqrt(dt) * self.rng.gauss(0.0, 1.0)
        if self.rng.random() < self.jump_prob:
            shock += self.rng.gauss(0.0, self.jump_sigma)
        return price * math.exp(shock)

    def lot(self) -> int:
        """A trade size: mostly round lots of 100, sometimes a block."""
        lots = 1 + int(self.rng.expovariate(0.5))
        return lots * (1000 if self.rng.random() < 0.03 else 100)

    def ticks(self, now: float) -> list[Tick]:
        if self.clock is None:
            self.clock = now
            self.last_tick = dict.fromkeys(self.listings, now)
            return []
        self.owed += (now - self.clock) * self.rate
        self.clock = now
        count = int(self.owed)
        self.owed -= count
        if not self.listings:
            return []
        tickers = list(self.listings)
        out: list[Tick] = []
        for _ in range(count):
            ticker = self.rng.choice(tickers)
            listing = self.listings[ticker]
            raw = self.step(listing, self.prices[ticker], now - self.last_tick[ticker])
            self.prices[ticker] = raw
            self.last_tick[ticker] = now
            out.append(Tick(ticker, round_to_tick(raw, listing.tick_size), self.lot()))
        return out


@dataclass(frozen=True, slots=True)
class ReplayRow:
    at: float  # seconds since the first row of the file
    tick: Tick


def read_replay(path: str | Path) -> list[ReplayRow]:
    """Read a replay file with the columns ``ts,symbol,price,volume``.

    ``ts`` is epoch seconds or an ISO 8601 time. Rows are sorted by time.

    Raises:
        ValueError: a missing column or a row that does not parse (with its line number).
    """
    rows: list[tuple[float, Tick]] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"ts", "symbol", "price", "volume"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, rec in enumerate(reader, start=2):
            try:
                ts = rec["ts"].strip()
                stamp = float(ts) if ts.replace(".", "", 1).isdigit() else datetime.fromisoformat(ts).timestamp()
                price, size = float(rec["price"]), int(float(rec["volume"]))
                if price <= 0 or size < 0:
                    raise ValueError("price must be positive and volume non-negative")
                rows.append((stamp, Tick(rec["symbol"].strip().upper(), price, size)))
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    rows.sort(key=lambda r: r[0])
    start = rows[0][0]
    return [ReplayRow(stamp - start, tick) for stamp, tick in rows]


class CsvReplay:
    """Replays a recorded file at ``speed`` times its own pace, looping when ``loop`` is set.

    Ticks for symbols that are not active (unknown, paused or deleted) are skipped.
    """

    def __init__(self, rows: Sequence[ReplayRow], *, speed: float = 1.0, loop: bool = False) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.rows = rows
        self.speed = speed
        self.loop = loop
        self.active: set[str] = set()
        self.pos = 0
        self.origin: float | None = None

    def set_listings(self, listings: Sequence[Listing], last_prices: dict[str, float]) -> None:
        self.active = {item.ticker for item in listings}

    @property
    def finished(self) -> bool:
        return not self.loop and self.pos >= len(self.rows)

    def ticks(self, now: float) -> list[Tick]:
        if self.origin is None:
            self.origin = now
        out: list[Tick] = []
        elapsed = (now - self.origin) * self.speed
        while True:
            if self.pos >= len(self.rows):
                if not self.loop:
                    break
                # Start the file again one (file) second after its last row.
                self.origin += (self.rows[-1].at + 1.0) / self.speed
                elapsed = (now - self.origin) * self.speed
                self.pos = 0
            row = self.rows[self.pos]
            if row.at > elapsed:
                break
            self.pos += 1
            if row.tick.symbol in self.active:
                out.append(row.tick)
        return out


SAMPLE_REPLAY = Path(__file__).parents[1] / "data" / "sample_replay.csv"
