"""Market-data vendors' streams, chosen by name: ``runfeed --source NAME`` or ``TICKER_FEED_SOURCE``.

``simulated`` (the default) is the feed's own market (a CSV replay is ``runfeed --replay``); the
others connect to a vendor (docs/SOURCES.md). Credentials come from the environment only, never from settings
files: Alpaca's key and secret from ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial

from ..streams import Pushed
from .alpaca import Alpaca
from .base import VendorStream
from .binance import Binance
from .coinbase import Coinbase

VENDORS = ("alpaca", "coinbase", "binance")
SOURCES = ("simulated", *VENDORS)


def vendor_stream(
    name: str, url: str = "", *, alpaca_feed: str = "iex", environ: Mapping[str, str] = os.environ
) -> VendorStream:
    """A new stream of vendor ``name``, at ``url`` if given (a sandbox, a proxy, a fake), else the vendor's.

    Raises:
        ValueError: an unknown vendor, a bad URL or feed, or missing credentials.
    """
    if name == "alpaca":
        return Alpaca(environ.get("APCA_API_KEY_ID", ""), environ.get("APCA_API_SECRET_KEY", ""), url,
                      feed=alpaca_feed)
    if name == "coinbase":
        return Coinbase(url)
    if name == "binance":
        return Binance(url)
    raise ValueError(f"unknown source {name!r}: one of {', '.join(SOURCES)}")


def vendor_source(name: str, url: str = "", *, alpaca_feed: str = "iex") -> Callable[[], Pushed] | None:
    """What the feed makes its source with for ``name``: a new connection for each feed run
    (a standby opens none until it holds the lease); None for the simulated market.

    Raises:
        ValueError: as ``vendor_stream`` (checked now, not when the feed starts).
    """
    if name == "simulated":
        return None
    vendor_stream(name, url, alpaca_feed=alpaca_feed)
    return partial(_pushed, name, url, alpaca_feed)


def _pushed(name: str, url: str, alpaca_feed: str) -> Pushed:
    return Pushed(vendor_stream(name, url, alpaca_feed=alpaca_feed))
