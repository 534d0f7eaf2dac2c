"""What travels on the channel layer, and one way to listen to it for a whole process.

Two groups carry everything:

- ``ticker.quotes``: one ``ticker.batch`` message per feed batch (feed → every hub).
- ``ticker.control``: one ``ticker.symbols`` message per admin change of the symbols or the
  market (admin → feed and hubs): the whole list and the market's state.

Browsers never join a group: each server process's hub does, once (DESIGN.md §3.2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer

from ..protocol import Row

log = logging.getLogger(__name__)

QUOTES_GROUP = "ticker.quotes"
CONTROL_GROUP = "ticker.control"
BATCH = "ticker.batch"
SYMBOLS = "ticker.symbols"
REJOINED = "ticker.rejoined"  # made up by Listener, never sent: "you may have missed messages"

REJOIN_SECONDS = 3600.0  # group membership expires (channels_redis group_expiry, 24 h): renew it
# Every second at most: a Sentinel failover (about 2.3 s) is rejoined within a second of its end.
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0)


def batch_message(
    epoch: str, seq: int, rows: Sequence[Row], removed: Iterable[str] = (), ts_ms: int = 0, *,
    stale_ms: int = 0, gaps: int = 0, source: str = "", down: bool = False,
) -> dict[str, Any]:
    """Batch ``seq`` of feed run ``epoch``, made at ``ts_ms`` (epoch milliseconds), with the feed's
    mark (``stale_ms``: how long a symbol may go without an update), the messages its source
    lost so far this run (``gaps``), where its prices come from (``source``) and whether the
    source's link to its vendor is down (``down``: every symbol is stale)."""
    return {"type": BATCH, "epoch": epoch, "seq": seq, "rows": list(rows), "removed": list(removed), "ts": ts_ms,
            "stale_ms": stale_ms, "gaps": gaps, "source": source, "down": down}


def symbols_message(symbols: Sequence[dict[str, Any]], market: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": SYMBOLS, "symbols": list(symbols), "market": market or {"state": "open", "reason": ""}}


def announce_symbols(symbols: Sequence[dict[str, Any]], market: dict[str, Any] | None = None) -> None:
    """Tell the feed and every hub that the symbol list changed (from sync code: admin, signals).

    ``async_to_sync`` costs a thread hop per call: fine for admin changes, never for ticks.
    The change is already saved: if the layer cannot be reached, say so and go on. The feed and
    the hubs read the symbols again from the database when they rejoin the layer.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(CONTROL_GROUP, symbols_message(symbols, market))
    except Exception as exc:
        log.warning("symbol change saved but not announced (channel layer unreachable: %s)", exc)


class Listener:
    """One channel on the layer that has joined some groups, with reconnects.

    ``messages()`` yields what arrives. After every (re)join it first yields a ``REJOINED``
    message: whatever was sent while the channel was away is lost, so the caller resyncs.
    """

    def __init__(self, groups: Sequence[str], layer: BaseChannelLayer | None = None) -> None:
        self.groups = tuple(groups)
        self.layer = layer or get_channel_layer()
        self.channel: str | None = None

    async def _join(self) -> None:
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            await self.layer.group_add(group, self.channel)

    async def _keep_joined(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                if self.channel:
                    for group in self.groups:
                        await self.layer.group_add(group, self.channel)
            except Exception:
                log.warning("could not renew group membership; will retry", exc_info=True)

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        keeper = asyncio.create_task(self._keep_joined())
        failures = 0
        try:
            while True:
                try:
                    if self.channel is None:
                        await self._join()
                        if failures:
                            log.info("rejoined %s after %d failed attempt(s)", ", ".join(self.groups), failures)
                        failures = 0
                        yield {"type": REJOINED}
                    message = await self.layer.receive(self.channel)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.channel = None
                    delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                    if not failures:
                        log.warning("channel layer failed (%s); retrying", exc)
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                yield message
        finally:
            keeper.cancel()
