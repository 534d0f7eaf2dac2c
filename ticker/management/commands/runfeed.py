import asyncio
import contextlib
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ticker.feed import Feed
from ticker.sources import CsvReplay, SimulatedMarket, Source, read_replay
from ticker.store import make_store

log = logging.getLogger("ticker.feed")


class Command(BaseCommand):
    help = (
        "Run the price feed: a simulated market (default) or a CSV replay, published in coalesced "
        "batches on the channel layer. In scaled mode (CHANNEL_LAYER_URL set) run exactly one."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rate", type=float, default=settings.TICKER_FEED_RATE,
                            help="simulated ticks per second over all symbols (default %(default)s)")
        parser.add_argument("--batch-ms", type=int, default=settings.TICKER_FEED_BATCH_MS,
                            help="coalescing window in milliseconds (default %(default)s)")
        parser.add_argument("--seed", type=int, default=settings.TICKER_FEED_SEED and int(settings.TICKER_FEED_SEED),
                            help="random seed, for a reproducible market")
        parser.add_argument("--replay", metavar="FILE", help="replay a CSV file (ts,symbol,price,volume)")
        parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
        parser.add_argument("--loop", action="store_true", help="replay the file again and again")

    def handle(self, *args, **options) -> None:
        if not settings.CHANNEL_LAYER_URL:
            raise CommandError(
                "runfeed publishes to other processes through Redis: set CHANNEL_LAYER_URL=redis://HOST:PORT/DB. "
                "(Without it, the server runs the feed itself.)"
            )
        source: Source
        try:
            if options["replay"]:
                source = CsvReplay(read_replay(options["replay"]), speed=options["speed"], loop=options["loop"])
            else:
                source = SimulatedMarket(rate=options["rate"], seed=options["seed"])
            feed = Feed(source, make_store(), batch_ms=options["batch_ms"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(feed.run())
        log.info("feed %s stopped at seq %d", feed.epoch, feed.seq)
