from argparse import ArgumentParser
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError

from ticker.clients.watch import DEFAULT_URL, WatchOptions, run
from ticker.protocol import SYMBOL_RE


class Command(BaseCommand):
    help = (
        "Watch the quote stream in the terminal: a live table of SYMBOLs (all when none), over the "
        "WebSocket (or --transport sse), reconnecting with backoff and resume. --json prints each "
        "server message on a line; --trace shows the upgrade and each frame's header bytes."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("symbols", nargs="*", metavar="SYMBOL", help="symbols to watch (default: all)")
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
        parser.add_argument("--json", action="store_true", help="one server message per line, no table")
        parser.add_argument("--count", type=int, help="stop after N updates (snap or q frames)")
        parser.add_argument("--trace", action="store_true",
                            help="show the upgrade request, the 101 answer and every frame's header bytes")
        parser.add_argument("--transport", choices=["ws", "sse"], default="ws",
                            help="ws (default) or sse (GET /sse/quotes/, Last-Event-ID resumes)")

    def handle(self, *args: Any, **options: Any) -> None:
        symbols = tuple(s.strip().upper() for s in options["symbols"])
        bad = [s for s in symbols if not SYMBOL_RE.match(s)]
        if bad:
            raise CommandError(f"not a ticker: {', '.join(bad)}")
        if options["count"] is not None and options["count"] < 1:
            raise CommandError("--count must be at least 1")
        opts = WatchOptions(url=options["url"], symbols=symbols, json=options["json"], count=options["count"],
                            trace=options["trace"], transport=options["transport"])
        try:
            run(opts, cast(TextIO, self.stdout), cast(TextIO, self.stderr))  # OutputWrapper wraps a TextIO
        except KeyboardInterrupt:
            pass
        except ValueError as exc:  # a URL the client cannot use
            raise CommandError(str(exc)) from exc
