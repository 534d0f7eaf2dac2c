"""The feed of the stock Channels baseline: one ``group_send`` per tick, as tutorials write it.

An asyncio loop (no ``async_to_sync`` per tick: that costs a thread, a loop and a Redis
connection per call, DESIGN.md §3) that asks the simulated market for its ticks and, for
each one, sends the event ``{"type":"quote.tick","seq":N,"row":[sym,last,volume,ts_ms]}``
to the ``quotes`` group (whole-board consumers) and to ``quotes.<SYM>`` (watchlists).
``seq`` rises by one per tick; ``ts_ms`` is the wall-clock time the tick is published.
Nothing is coalesced: at 200 ticks/s each whole-board consumer gets 200 messages a second.

Run: ``python -m benchmarks.baseline.stock_feed --redis redis://127.0.0.1:RP/0 --symbols 50 --rate 200``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Sequence

from .market import DEFAULT_RATE, DEFAULT_SEED, DEFAULT_SYMBOLS, TickMarket
from .stock_server import BOARD_GROUP, symbol_group
from .stock_settings import configure

log = logging.getLogger("stock_feed")

REPORT_SECONDS = 10.0


async def run_feed(symbols: int, rate: float, seed: int) -> None:
    """Publish every tick until SIGINT or SIGTERM; log the achieved rate every few seconds."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    market = TickMarket(symbols, rate, seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.warning("stock_feed: %d symbols at %g ticks/s, one group_send per tick", symbols, rate)
    market.ticks(time.monotonic())  # start the market's clock
    sent, since = 0, time.monotonic()
    while not stop.is_set():
        for seq, row in market.ticks(time.monotonic()):
            event = {"type": "quote.tick", "seq": seq, "row": row}
            await layer.group_send(BOARD_GROUP, event)
            await layer.group_send(symbol_group(row[0]), event)
            sent += 1
        now = time.monotonic()
        if now - since >= REPORT_SECONDS:
            log.warning("stock_feed: seq %d, %.0f ticks/s", market.seq, sent / (now - since))
            sent, since = 0, now
        await asyncio.sleep(1 / rate)
    await layer.flush()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--redis", required=True, help="the channel layer's Redis, redis://host:port/db")
    parser.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="ticks per second, whole market")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure(args.redis)
    asyncio.run(run_feed(args.symbols, args.rate, args.seed))


if __name__ == "__main__":
    main()
