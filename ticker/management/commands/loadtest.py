import argparse
import importlib
import json
from types import ModuleType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


def load_client() -> ModuleType:
    """The load client's engine (benchmarks/loadclient.py): in a checkout, not in the Docker image."""
    try:
        return importlib.import_module("benchmarks.loadclient")
    except ModuleNotFoundError as exc:
        raise CommandError(
            "loadtest needs the benchmarks/ folder of a checkout of this project (the Docker image leaves it "
            "out); run it from a checkout against the server's URL"
        ) from exc


class Command(BaseCommand):
    help = (
        "Load a quotes WebSocket with many clients (benchmarks/loadclient.py) and print one JSON line: "
        "freshness p50/p99/max, seq gaps, frames/ticks/bytes per second, connect times, errors, client CPU, "
        "and the server's CPU and RSS with --server-pid. Bounded in time; stops by itself. Example: "
        "manage.py loadtest --url ws://127.0.0.1:8000/ws/quotes/ --clients 1000 --symbols all --duration 20"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        try:
            load_client().add_arguments(parser)
        except CommandError as exc:
            parser.description = str(exc)

    def handle(self, *args: Any, **options: Any) -> None:
        loadclient = load_client()
        opts = argparse.Namespace(**options)
        try:
            result = loadclient.run(opts)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result))
