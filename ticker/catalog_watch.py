"""Notice catalog changes that another process wrote to the database but could not announce.

An admin save announces the symbols on the channel layer itself (``ticker.signals``). With the
in-memory layer (the embedded mode) that layer lives inside one server process: a command run
beside it (``manage.py setup_demo --symbols N``) shares the database but not the layer, so its
announcement reaches nobody. This process therefore reads a cheap fingerprint of the catalog
once a second and, when it changed, announces the catalog on its own layer, where its hub and
its embedded feed listen. With Redis every process shares the layer, so every writer's own
announcement already arrives and nothing needs watching (``needed()``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max

from .layer import bus
from .models import Market, Symbol

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between looks at the database

Fingerprint = tuple[int, int | None, datetime | None]


def needed() -> bool:
    """Whether this process must watch: its channel layer is in-process (no Redis)."""
    return settings.TICKER_REDIS is None


def fingerprint() -> Fingerprint:
    """What changes when symbols are added or deleted, or the market is halted or reopened: the
    number of symbols, the highest id, and when the market row last changed (two indexed queries).

    An edit of an existing symbol's fields from another process does not change it: such edits
    come through the admin, which announces them itself.
    """
    symbols = Symbol.objects.aggregate(count=Count("pk"), last=Max("pk"))
    market = Market.objects.filter(pk=1).values_list("changed", flat=True).first()
    return symbols["count"], symbols["last"], market


def read_announcement() -> dict[str, object]:
    return bus.symbols_message(Symbol.wire_list(), Market.wire())


async def watch(interval: float = INTERVAL) -> None:
    """Run until cancelled: every ``interval`` seconds compare the fingerprint with the last one
    read and, when it differs, send the whole catalog to the control group. A database that
    cannot be read is logged and tried again at the next look."""
    last: Fingerprint | None = None
    while True:
        try:
            now = await sync_to_async(fingerprint)()
            if last is not None and now != last:
                await get_channel_layer().group_send(bus.CONTROL_GROUP, await sync_to_async(read_announcement)())
            last = now
        except DatabaseError as exc:
            log.warning("catalog watch: database unreadable (%s); trying again", exc)
        await asyncio.sleep(interval)
