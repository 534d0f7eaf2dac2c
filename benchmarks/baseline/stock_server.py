"""Baseline (a): the stock Channels path, written the way the tutorials write it.

One ``AsyncJsonWebsocketConsumer`` per client. On connect it joins the ``quotes`` group and
sends ``hello``; the feed (``stock_feed.py``) does one ``group_send`` per tick, and every
consumer's ``quote_tick`` handler turns the event into a ``q`` frame with ``send_json``. A
watchlist (``{"op":"sub","symbols":[...]}``) leaves ``quotes`` and joins one group per
symbol (``quotes.<SYM>``); ``"*"`` goes back to ``quotes``. Served by daphne, the server
Channels ships with, and the channels_redis pub/sub layer (see ``stock_settings.py``).

This is the code of the Channels tutorial's chat room applied to prices: nothing coalesced,
nothing shared between clients (a layer message, a ``json.dumps`` and an ASGI send per client
per tick, plus Channels' per-event database cleanup hop). It is not optimised on purpose: it
is the cost a team pays before doing anything about fan-out.

Frames are protocol v1 as far as the load client needs them: ``hello`` (``seq`` 0: a consumer
does not know the feed's position until its first tick) and ``q`` frames of one row each, whose
``seq`` rises by one per tick on the whole board. A watchlist's ``seq`` skips the other
symbols' ticks.

Known behaviour of this stack, kept because it is the baseline: a consumer whose client
leaves while ticks are queued for it never unsubscribes its channel (the pub/sub layer cleans
up only when its pending ``receive`` is cancelled, and under load that task has already
finished: channels_redis#276), so every busy disconnect leaves a Redis subscription and a
queue behind; and a ``send_json`` to a client that has just gone raises autobahn's
``Disconnected``, which ends the consumer without ``disconnect()``, so its groups keep a dead
member and the process stays subscribed to ``quotes``. Start a fresh server for each run.

Run (after ``stock_feed``'s Redis is up):
``python -m benchmarks.baseline.stock_server --redis redis://127.0.0.1:RP/0 --port P``
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from .market import DEFAULT_SYMBOLS, MarketSymbol, hello_message, load_symbols, new_epoch, node_name
from .stock_settings import configure

BOARD_GROUP = "quotes"


def symbol_group(symbol: str) -> str:
    """The group of one symbol's ticks (a watchlist joins one per symbol)."""
    return f"{BOARD_GROUP}.{symbol}"


class QuoteConsumer(AsyncJsonWebsocketConsumer):
    """One connection: the whole board by default, a watchlist after ``sub`` with a list."""

    symbols: list[MarketSymbol] = []
    epoch = new_epoch()
    node = node_name("stock")

    async def connect(self) -> None:
        self.groups_joined: set[str] = {BOARD_GROUP}
        await self.channel_layer.group_add(BOARD_GROUP, self.channel_name)
        await self.accept()
        await self.send_json(hello_message(self.epoch, 0, self.node, self.symbols))

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("op") != "sub":
            return
        wanted = content.get("symbols")
        if wanted == "*":
            groups = {BOARD_GROUP}
        elif isinstance(wanted, list):
            known = {s.ticker for s in self.symbols}
            groups = {symbol_group(str(s).upper()) for s in wanted if str(s).upper() in known}
            if not groups:
                return
        else:
            return
        for group in self.groups_joined - groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in groups - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = groups

    async def quote_tick(self, event: dict[str, Any]) -> None:
        await self.send_json({"t": "q", "seq": event["seq"], "q": [event["row"]]})


def build_application(symbols: int = DEFAULT_SYMBOLS) -> ProtocolTypeRouter:
    """The ASGI application (Django settings must be configured first)."""
    QuoteConsumer.symbols = load_symbols(symbols)
    consumer = QuoteConsumer.as_asgi()
    return ProtocolTypeRouter({"websocket": URLRouter([path("ws/quotes/", consumer), path("", consumer)])})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--redis", required=True, help="the channel layer's Redis, redis://host:port/db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS)
    args = parser.parse_args(argv)
    configure(args.redis)
    application = build_application(args.symbols)
    # daphne.server installs Twisted's asyncio reactor when imported: import it here, after
    # Django is set up and before anything else can import a reactor.
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("stock_server").warning(
        "stock_server: daphne on ws://%s:%d/ws/quotes/, layer %s", args.host, args.port, args.redis)
    Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=args.host, port=args.port),
        verbosity=0,
    ).run()


if __name__ == "__main__":
    main()
