"""The demo's starting data: ~40 real tickers with plausible previous closes."""

import csv
from decimal import Decimal
from pathlib import Path

from .models import Symbol

SYMBOLS_CSV = Path(__file__).parent / "data" / "symbols.csv"


def seed_symbols(path: Path = SYMBOLS_CSV) -> int:
    """Create the symbols of ``path`` that do not exist yet; returns how many were created.

    Existing symbols are left as the operator edited them.
    """
    created = 0
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            _, made = Symbol.objects.get_or_create(
                ticker=rec["ticker"],
                defaults={
                    "name": rec["name"],
                    "exchange": rec["exchange"],
                    "prev_close": Decimal(rec["prev_close"]),
                    "volatility": float(rec["volatility"]),
                },
            )
            created += made
    return created
