"""Alpaca market data v2 (US stocks): trades move the price, quotes show the symbol is alive.

The server greets with ``[{"T":"success","msg":"connected"}]``; the client logs in with
``{"action":"auth","key":…,"secret":…}`` and is answered ``authenticated`` or an error; then it
subscribes ``trades`` and ``quotes`` per symbol. Every message is a JSON array of objects keyed by
``T``: ``t`` a trade (``S`` symbol, ``p`` price, ``s`` size, ``t`` RFC 3339 time), ``q`` a quote,
``subscription`` what is subscribed now, ``error`` a ``code`` and ``msg``; the rest (bars,
statuses, corrections, cancels) is not used. Alpaca sends no heartbeats: the WebSocket's pings
find a dead link. Feeds: ``iex`` (free), ``sip`` (paid), and ``test``, always on, with ``FAKEPACA``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from ..sources import Tick
from ..streams import Sink, SourceRefused
from .base import Reconnect, VendorStream, log, price, rfc3339_ms, size

FEEDS = ("iex", "sip", "delayed_sip", "test")
# Errors retrying cannot fix: not authenticated, auth failed, connection limit (one connection
# per account on most plans), v2 not enabled, insufficient subscription (sip on a free plan).
REFUSALS = {401, 402, 406, 408, 409}
# Errors a new connection may cure: auth timeout, slow client, internal error.
RETRIES = {404, 407, 500}


class Alpaca(VendorStream):
    name = "alpaca"
    URL = "wss://stream.data.alpaca.markets/v2/iex"

    def __init__(self, key: str, secret: str, url: str = "", *, feed: str = "iex", **options: Any) -> None:
        if feed not in FEEDS:
            raise ValueError(f"alpaca: unknown feed {feed!r}; one of {', '.join(FEEDS)}")
        if not key or not secret:
            raise ValueError("alpaca needs a key and a secret: set APCA_API_KEY_ID and APCA_API_SECRET_KEY")
        super().__init__(url or f"wss://stream.data.alpaca.markets/v2/{feed}", **options)
        self.credentials = {"action": "auth", "key": key, "secret": secret}
        self.label = f"Alpaca ({feed})"

    async def opened(self, ws: ClientConnection) -> None:
        await self.expect(ws, "connected")  # or an error: 406 comes instead of the greeting
        await ws.send(orjson.dumps(self.credentials).decode())
        await self.expect(ws, "authenticated")

    async def expect(self, ws: ClientConnection, success: str) -> None:
        """Read until ``{"T":"success","msg":success}``; raise for an error on the way."""
        while True:
            for item in orjson.loads(await ws.recv()):
                if item["T"] == "error":
                    self.error(item)
                elif item["T"] == "success" and item["msg"] == success:
                    return

    def subscribe(self, symbols: Sequence[str]) -> list[str]:
        return [orjson.dumps({"action": "subscribe", "trades": list(symbols), "quotes": list(symbols)}).decode()]

    def unsubscribe(self, symbols: Sequence[str]) -> list[str]:
        return [orjson.dumps({"action": "unsubscribe", "trades": list(symbols), "quotes": list(symbols)}).decode()]

    def receive(self, message: str | bytes, sink: Sink) -> None:
        items = orjson.loads(message)
        if not isinstance(items, list):
            raise TypeError("not a JSON array")
        self.each(items, lambda item: self.item(item, sink))

    def item(self, item: dict[str, Any], sink: Sink) -> None:
        kind = item["T"]
        if kind == "t":
            if ticker := self.ticker(item["S"]):
                sink.trade(Tick(ticker, price(item["p"]), size(item["s"]), rfc3339_ms(item["t"])))
        elif kind == "q":
            if ticker := self.ticker(item["S"]):
                sink.heard(ticker, rfc3339_ms(item["t"]))
        elif kind == "error":
            self.error(item)
        elif kind == "subscription":
            log.info("alpaca: subscribed trades %s", item.get("trades"))

    def error(self, item: dict[str, Any]) -> None:
        """Raise for an error that ends the connection or the feed; log the others (a symbol limit)."""
        code, text = item.get("code"), item.get("msg")
        reason = f"alpaca error {code}: {text}"
        if code in REFUSALS:
            raise SourceRefused(reason + (" (another connection uses this key: most plans allow one)"
                                          if code == 406 else ""))
        if code in RETRIES:
            raise Reconnect(reason)
        log.error("%s", reason)
