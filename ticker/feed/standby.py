"""Run feeds behind the store's lease: a hot standby until this process holds it.

Each time the lease is ours a new feed run starts (a new epoch, ordered after the store's;
prices continued from the store); if it is lost, publishing stops at once and the process waits again. A memory store's
lease is always held, so the embedded feed goes through the same loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..layer.lease import LeaseLost
from ..layer.store import QuoteStore
from .publisher import Feed
from .sources import Source
from .streams import SourceRefused

log = logging.getLogger(__name__)


async def serve(make_source: Callable[[], Source], store: QuoteStore, batch_ms: int = 100) -> None:
    """Run feeds until cancelled (or until a finite source ends), each while the lease is held.

    Raises:
        SourceRefused: the source gave up for good (a vendor refused the feed's credentials).
    """
    lease = store.lease()
    try:
        while True:
            await lease.acquire()
            feed = Feed(make_source(), store, batch_ms=batch_ms)
            try:
                async with asyncio.TaskGroup() as group:
                    keeper = group.create_task(lease.keep())
                    await feed.start()
                    if lease.owner:
                        log.info("feed lease held by %s: active, epoch %s", lease.owner, feed.epoch)
                    await feed.publish_forever()
                    keeper.cancel()  # a finite source ended
                return
            except* LeaseLost as lost:
                log.warning("feed %s stopped: %s", feed.epoch, lost.exceptions[0])
            except* SourceRefused as refused:
                raise refused.exceptions[0] from None
    finally:
        await asyncio.shield(lease.release())
