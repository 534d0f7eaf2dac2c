"""The demo's starting data: ~40 real tickers with plausible previous closes."""

import csv
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
