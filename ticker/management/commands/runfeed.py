import asyncio
import logging
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ticker.feed.sources import CsvReplay, SimulatedMarket, Source, read_replay
from ticker.feed.standby import serve
from ticker.feed.streams import SourceRefused
from ticker.feed.vendors import SOURCES, vendor_source
from ticker.layer.store import make_store

log = logging.getLogger("ticker.feed")


class Command(BaseCommand):
    help = (
        "Run the price feed: a simulated market (default), a CSV replay or a vendor's stream, published in "
        "coalesced batches on the channel layer. Start two: the second waits as a hot standby (Redis lease)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=settings.TICKER_FEED_RATE,
                            help="simulated ticks per second over all symbols (default %(default)s)")
        parser.add_argument("--batch-ms", type=int, default=settings.TICKER_FEED_BATCH_MS,
                            help="coalescing window in milliseconds (default %(default)s)")
        parser.add_argument("--seed", type=int,
                            default=settings.TICKER_FEED_SEED and int(settings.TICKER_FEED_SEED),
                            help="random seed, for a reproducible market")
        parser.add_argument("--replay", metavar="FILE", help="replay a CSV file (ts,symbol,price,volume)")
        parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
        parser.add_argument("--loop", action="store_true", help="replay the file again and again")
        parser.add_argument("--source", choices=SOURCES,
                            help=f"where prices come from (default {settings.TICKER_FEED_SOURCE}, "
                            "TICKER_FEED_SOURCE; docs/SOURCES.md)")
        parser.add_argument("--url", default=settings.TICKER_FEED_URL,
                            help="the vendor's endpoint instead of its own: a sandbox, a proxy (TICKER_FEED_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.TICKER_REDIS is None:
            raise CommandError(
                "runfeed publishes to other processes through Redis: set CHANNEL_LAYER_URL=redis://HOST:PORT/DB "
                "or TICKER_REDIS_SENTINELS=HOST:PORT,... (Without it, the server runs the feed itself.)"
            )
        if options["batch_ms"] < 10:
            raise CommandError("--batch-ms must be at least 10")
        if options["replay"] and options["source"] not in (None, "simulated"):
            raise CommandError(f"--replay and --source {options['source']}: choose one")
        make_source: Callable[[], Source] | None
        try:
            if options["replay"]:
                rows = read_replay(options["replay"])
                make_source = partial(CsvReplay, rows, speed=options["speed"], loop=options["loop"])
            else:
                make_source = vendor_source(options["source"] or settings.TICKER_FEED_SOURCE, options["url"],
                                            alpaca_feed=settings.TICKER_ALPACA_FEED)
                make_source = make_source or partial(SimulatedMarket, rate=options["rate"], seed=options["seed"])
            make_source()  # check the arguments before waiting for the lease
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            asyncio.run(self.serve(make_source, options["batch_ms"]))
        except SourceRefused as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    async def serve(make_source: Callable[[], Source], batch_ms: int) -> None:
        # SIGTERM/SIGINT: stop cleanly and hand the lease over at once.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await serve(make_source, make_store(settings.TICKER_REDIS, settings.CHANNEL_LAYER_PREFIX), batch_ms)
        except asyncio.CancelledError:
            log.info("feed stopped")
