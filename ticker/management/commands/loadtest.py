import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from benchmarks import loadclient


class Command(BaseCommand):
    help = (
        "Load a quotes WebSocket with many clients (benchmarks/loadclient.py) and print one JSON line: "
        "freshness p50/p99/max, seq gaps, frames/ticks/bytes per second, connect times, errors, client CPU, "
        "and the server's CPU and RSS with --server-pid. Bounded in time; stops by itself. Example: "
        "manage.py loadtest --url ws://127.0.0.1:8000/ws/quotes/ --clients 1000 --symbols all --duration 20"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        loadclient.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        opts = argparse.Namespace(**options)
        try:
            result = loadclient.run(opts)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result))
