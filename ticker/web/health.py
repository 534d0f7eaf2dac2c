"""Whether the feed is alive, as this process's hub sees it: the health check's one rule.

The feed publishes a batch only when a price moved. While the market is halted, or no listed
symbol ticks (all paused, or none left), it publishes nothing, and the age of the newest quote
says nothing about it: the market is quiet, not the feed dead. The market's state reaches the
hub with the catalog (an admin's save), so health reads it there.

While the market is quiet a feed that died cannot be told from one that waits; it shows as
stale ``STALE_FEED_SECONDS`` after the market reopens (or a symbol resumes).
"""

from __future__ import annotations

import enum

from ..fanout.hub import Hub
from ..fanout.types import Catalog

STALE_FEED_SECONDS = 5.0


class Feed(enum.Enum):
    """What the feed's silence means (``value``: as ``/healthz`` and ``/internal/status`` say it)."""

    FRESH = "fresh"  # a batch within STALE_FEED_SECONDS
    HALTED = "halted"  # the market is halted: nothing ticks
    IDLE = "idle"  # no listed symbol ticks (every one paused, or none listed)
    STALE = "stale"  # symbols should tick and nothing came: the feed (or the layer) is down


def quiet(catalog: Catalog) -> Feed | None:
    """Why nothing is expected from the feed (``HALTED``, ``IDLE``), or None when quotes should flow."""
    if catalog.status.get("state") == "halted":
        return Feed.HALTED
    if all(entry.get("paused") for entry in catalog.entries):
        return Feed.IDLE
    return None


def feed_state(hub: Hub) -> Feed:
    """``FRESH`` after a recent batch, else why the feed is silent: a quiet market, or ``STALE``."""
    age = hub.feed_age()
    if age is not None and age < STALE_FEED_SECONDS:
        return Feed.FRESH
    return quiet(hub.catalog) or Feed.STALE
