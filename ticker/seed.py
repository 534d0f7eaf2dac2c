"""The demo's starting data: ~40 real tickers with plausible previous closes, and made-up ones
to fill a larger board (``setup_demo --symbols 200``) for load tests of the page."""

import csv
import random
from decimal import Decimal
from pathlib import Path

from .models import Symbol
from .signals import announce_after_commit

SYMBOLS_CSV = Path(__file__).parent / "data" / "symbols.csv"


def seed_symbols(path: Path = SYMBOLS_CSV) -> int:
    """Create the symbols of ``path`` that do not exist yet; returns how many were created.

    Existing symbols are left as the operator edited them.
    """
    existing = set(Symbol.objects.values_list("ticker", flat=True))
    with open(path, newline="") as fh:
        new = [
            Symbol(ticker=rec["ticker"], name=rec["name"], exchange=rec["exchange"],
                   prev_close=Decimal(rec["prev_close"]), volatility=float(rec["volatility"]))
            for rec in csv.DictReader(fh)
            if rec["ticker"] not in existing
        ]
    Symbol.objects.bulk_create(new)
    if new:
        announce_after_commit()  # bulk_create sends no post_save
    return len(new)


MAX_SYNTHETIC = 26**3


def _synthetic_ticker(index: int) -> str:
    """``ZAAA``, ``ZAAB`` … ``ZZZZ``: deterministic, four letters from Z (no real ticker among the seeded)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    a, rest = divmod(index, 26 * 26)
    b, c = divmod(rest, 26)
    return f"Z{letters[a]}{letters[b]}{letters[c]}"


def seed_demo_symbols(total: int) -> int:
    """Top the listing up to ``total`` symbols with made-up ones (after the real ones are seeded).

    The names and closes are drawn from a fixed seed, so every machine gets the same board.
    Returns how many were created.
    """
    existing = set(Symbol.objects.values_list("ticker", flat=True))
    rng = random.Random(200)
    new: list[Symbol] = []
    index = 0
    while len(existing) + len(new) < total and index < MAX_SYNTHETIC:
        ticker = _synthetic_ticker(index)
        index += 1
        close = Decimal(str(round(rng.uniform(5, 400), 2)))
        volatility = round(rng.uniform(0.15, 0.6), 2)
        if ticker in existing:
            continue
        new.append(Symbol(ticker=ticker, name=f"Demo Holdings {ticker}", exchange="DEMO",
                          prev_close=close, volatility=volatility))
    Symbol.objects.bulk_create(new)
    if new:
        announce_after_commit()
    return len(new)
