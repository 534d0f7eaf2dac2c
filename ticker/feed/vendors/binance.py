"""Binance spot, public trade streams (crypto, no key).

One raw connection (``/ws``) and live subscriptions on it: ``{"method":"SUBSCRIBE","params":
["btcusdt@trade"],"id":1}``, answered ``{"result":null,"id":1}`` (or an ``error``). Stream names
are lower case; a ``trade`` carries ``s`` (the symbol, upper case), ``p`` and ``q`` (price and
quantity, strings), ``T`` (trade time, epoch ms). The server pings every 20 s (the client
answers by itself), sends ``serverShutdown`` before it goes away (we reconnect at once), and
limits a connection to 5 incoming messages a second and 1,024 streams. A combined-stream
envelope (``{"stream","data"}``, from ``/stream`` URLs) is unwrapped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import orjson

from ..sources import Listing, Tick
from ..streams import Sink
from .base import Reconnect, VendorStream, log, price, size


class Binance(VendorStream):
    name = "binance"
    label = "Binance spot"
    URL = "wss://stream.binance.com:9443/ws"

    def __init__(self, url: str = "", **options: Any) -> None:
        super().__init__(url, **options)
        self.ids = itertools.count(1)

    def key(self, listing: Listing) -> str:
        return listing.feed_symbol.upper()

    def request(self, method: str, symbols: Sequence[str]) -> list[str]:
        params = [f"{symbol.lower()}@trade" for symbol in symbols]
        return [orjson.dumps({"method": method, "params": params, "id": next(self.ids)}).decode()]

    def subscribe(self, symbols: Sequence[str]) -> list[str]:
        return self.request("SUBSCRIBE", symbols)

    def unsubscribe(self, symbols: Sequence[str]) -> list[str]:
        return self.request("UNSUBSCRIBE", symbols)

    def receive(self, message: str | bytes, sink: Sink) -> None:
        event = orjson.loads(message)
        if "stream" in event and "data" in event:
            event = event["data"]
        kind = event.get("e")
        if kind == "trade":
            if ticker := self.ticker(event["s"]):
                sink.trade(Tick(ticker, price(event["p"]), size(event["q"]), int(event["T"])))
        elif kind == "serverShutdown":
            raise Reconnect("binance: the server is shutting down")
        elif "error" in event or "code" in event:
            log.error("binance error: %s", event.get("error", event))
        elif "result" not in event:
            raise ValueError("neither a trade, an answer nor an error")
