import asyncio
from typing import Any, TextIO, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ticker.feed.check import check
from ticker.feed.sources import Listing
from ticker.feed.streams import SourceRefused
from ticker.feed.vendors import VENDORS, vendor_stream
from ticker.models import Symbol


class Command(BaseCommand):
    help = (
        "Connect to a market-data vendor and print what arrives for each symbol over a few seconds (the admin's "
        "active symbols, or --symbols in the vendor's own names). Needs a network; the tests never run it "
        "against a vendor, only against their fakes (--url)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", choices=VENDORS, required=True, help="the vendor")
        parser.add_argument("--seconds", type=float, default=10.0, help="how long to listen (default 10)")
        parser.add_argument("--url", default=settings.TICKER_FEED_URL, help="the vendor's endpoint instead of its own")
        parser.add_argument("--symbols", help="comma-separated vendor symbols (BTC-USD,ETH-USD) instead of the admin's")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 < options["seconds"] <= 3600:
            raise CommandError("--seconds must be more than 0 and at most 3600")
        try:
            stream = vendor_stream(options["source"], options["url"], alpaca_feed=settings.TICKER_ALPACA_FEED)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["symbols"]:
            names = [name.strip() for name in options["symbols"].split(",") if name.strip()]
            listings = [Listing(name, 1.0) for name in names]
        else:
            listings = [Listing(s.ticker, float(s.prev_close), vendor=s.vendor_symbol)
                        for s in Symbol.objects.filter(active=True)]
        if not listings:
            raise CommandError("no symbols: none is active in the admin, and --symbols was not given")
        try:
            tally = asyncio.run(check(stream, listings, options["seconds"], cast(TextIO, self.stdout)))
        except SourceRefused as exc:
            raise CommandError(str(exc)) from exc
        except TimeoutError as exc:
            raise CommandError(f"{stream.name}: no connection to {stream.url}") from exc
        if not tally.seen:
            raise CommandError(f"nothing arrived from {stream.name} in {options['seconds']:g} s")
