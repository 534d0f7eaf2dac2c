"""What the ticker stores: the symbols and the market an operator manages, the 1-minute candles the
feed writes, and signed-in users' watchlists.

Live quotes are not stored here: the tick path never touches the ORM. The feed keeps the
latest quote of every symbol in the quote store (``ticker.layer.store``) instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from .protocol import MAX_SYMBOLS, SYMBOL_RE

MAX_WATCHLIST = MAX_SYMBOLS  # a watchlist is one connection's subscription
# One tick is a small step of the price: at most this fraction of the previous close (US stocks
# over $1 trade in cents, 1 % of $1). Beyond it each tick is a jump (5,000 on a price of 1: 499,900 %).
MAX_TICK_FRACTION = Decimal("0.01")
# Annualised volatility: the busiest real stocks reach 2 or 3 (200–300 % a year). Far beyond it the
# simulated walk falls to one tick and stays there within seconds (1e6 did).
MAX_VOLATILITY = 5.0
MIN_TICK = Decimal("0.0001")
MIN_PREV_CLOSE = MIN_TICK / MAX_TICK_FRACTION  # where the smallest tick is still a small step
TICK_PERCENT = f"{MAX_TICK_FRACTION * 100:.0f} %"
VOLATILITY_PERCENT = f"{MAX_VOLATILITY * 100:.0f} %"
VENDOR_SYMBOL_RE = r"^[A-Za-z0-9][A-Za-z0-9.\-_/:]{0,31}$"


class Symbol(models.Model):
    """A listed instrument. Pausing one (``active=False``) stops its ticks but keeps it on the board."""

    ticker = models.CharField(
        max_length=12, unique=True, validators=[RegexValidator(SYMBOL_RE, "Upper-case letters, digits, . or -")]
    )
    name = models.CharField(max_length=100)
    exchange = models.CharField(max_length=16, default="NASDAQ")
    currency = models.CharField(max_length=3, default="USD")
    active = models.BooleanField(default=True, help_text="Untick to pause: no ticks until resumed.")
    tick_size = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("0.01"), validators=[MinValueValidator(MIN_TICK)],
        help_text=f"The smallest price step: at least {MIN_TICK}, at most {TICK_PERCENT} of the previous close.",
    )
    prev_close = models.DecimalField(
        "previous close", max_digits=12, decimal_places=4,
        validators=[MinValueValidator(MIN_PREV_CLOSE, f"At least {MIN_PREV_CLOSE}: the smallest tick ({MIN_TICK}) "
                                      f"is then {TICK_PERCENT}% of it.")],
        help_text=f"Where the simulated price starts; at least {MIN_PREV_CLOSE}.",
    )
    # A validator's message is %-formatted with its limit: %% shows a per cent sign.
    volatility = models.FloatField(
        default=0.3,
        validators=[
            MinValueValidator(0.0, "At least 0: a volatility is a spread of returns, never negative."),
            MaxValueValidator(MAX_VOLATILITY, f"At most {MAX_VOLATILITY:g} ({VOLATILITY_PERCENT}% a year): far "
                              "beyond it the simulated price falls to one tick within seconds and stays there."),
        ],
        help_text=f"Annualised volatility of the simulated market: 0 (a flat line) to {MAX_VOLATILITY:g} "
        f"({VOLATILITY_PERCENT} a year; 0.3 is a typical large stock).",
    )

    vendor_symbol = models.CharField(
        max_length=32, blank=True,
        validators=[RegexValidator(VENDOR_SYMBOL_RE, "Letters, digits, and . - _ / : only")],
        help_text="What the market-data vendor calls it (BTC-USD at Coinbase, BTCUSDT at Binance, BRK.B at "
        "Alpaca); empty: the ticker. The simulated market and the replay ignore it.",
    )

    class Meta:
        ordering = ["ticker"]

    def __str__(self) -> str:
        return self.ticker

    def clean(self) -> None:
        """Refuse a tick size that is a large part of the price: each tick would be a jump."""
        if self.tick_size is None or self.prev_close is None:
            return  # the fields' own errors say what is missing
        largest = self.prev_close * MAX_TICK_FRACTION
        if self.tick_size > largest:
            raise ValidationError({"tick_size": (
                f"At most {TICK_PERCENT} of the previous close ({largest.normalize():f} here): "
                f"a tick of {self.tick_size.normalize():f} on a price of {self.prev_close.normalize():f} "
                f"would move the price {self.tick_size / self.prev_close * 100:,.0f} % at a step."
            )})

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.ticker = self.ticker.strip().upper()
        self.vendor_symbol = self.vendor_symbol.strip()
        super().save(*args, **kwargs)

    @classmethod
    def wire_list(cls) -> list[dict[str, Any]]:
        """Every symbol's entry, as ``hello`` and ``sym`` frames list them."""
        return [symbol.as_wire() for symbol in cls.objects.all()]

    def as_wire(self) -> dict[str, Any]:
        """The entry for this symbol in ``hello`` and ``sym`` frames (docs/PROTOCOL.md)."""
        return {
            "s": self.ticker,
            "name": self.name,
            "ex": self.exchange,
            "ccy": self.currency,
            "tick": float(self.tick_size),
            "prev": float(self.prev_close),
            "paused": not self.active,
        }


class Candle(models.Model):
    """One minute of one symbol's published prices (open, high, low, close, volume traded)."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="candles")
    start = models.DateTimeField(db_index=True)
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["symbol", "start"]
        constraints = [models.UniqueConstraint(fields=["symbol", "start"], name="one_candle_per_minute")]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.start:%Y-%m-%d %H:%M}"


class Watchlist(models.Model):
    """A signed-in user's watchlist: tickers in the order the user put them, at most ``MAX_WATCHLIST``.

    An ordered JSON list rather than a row per ticker: the page always reads and writes the whole
    list at once (``GET/PUT /api/watchlist/``), and its order is the user's. A ticker deleted by an
    operator stays in the list but is left out of what the endpoint answers.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlist")
    tickers = models.JSONField(default=list)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(self.tickers)}"


class Market(models.Model):
    """The market as a whole: open, or halted by an operator with a reason every page shows.

    One row (``current()``). A halt stops every symbol's ticks (the feed reads it with the
    symbols) without touching each symbol's own paused flag, so reopening restores them as they
    were.
    """

    halted = models.BooleanField(default=False, help_text="Halt every symbol: no ticks until reopened.")
    reason = models.CharField(max_length=200, blank=True, help_text="Shown on every page while halted.")
    changed = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "market"
        verbose_name_plural = "market"

    def __str__(self) -> str:
        return f"halted: {self.reason}" if self.halted else "open"

    @classmethod
    def current(cls) -> Market:
        market, _ = cls.objects.get_or_create(pk=1)
        return market

    @classmethod
    def wire(cls) -> dict[str, Any]:
        """The market's state as ``hello`` and ``sym`` frames carry it (docs/PROTOCOL.md)."""
        market = cls.objects.filter(pk=1).first()
        if market is None or not market.halted:
            return {"state": "open", "reason": ""}
        return {"state": "halted", "reason": market.reason, "since_ms": int(market.changed.timestamp() * 1000)}
