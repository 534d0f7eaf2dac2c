"""Coinbase Advanced Trade, public market data (crypto, no key): the ``ticker`` channel.

The client subscribes ``{"type":"subscribe","channel":"ticker","product_ids":[…]}`` and the
``heartbeats`` channel (one message a second, which keeps quiet subscriptions open and lets a
silence of a few seconds mean a dead link). Every message is an envelope ``{"channel",
"client_id","timestamp","sequence_num","events":[…]}``; ``sequence_num`` counts the messages of
one connection, so a jump means lost messages: counted (``gaps``) and logged once per connection.
A ``ticker`` event lists ``tickers`` with ``product_id`` and ``price`` (a string: kept exact). The
ticker channel gives no trade size, so the board's volume stays as the admin set it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from ..sources import Tick
from ..streams import Sink
from .base import VendorStream, log, price, rfc3339_ms


def frame(kind: str, channel: str, products: Sequence[str] = ()) -> str:
    message: dict[str, Any] = {"type": kind, "channel": channel}
    if products:
        message["product_ids"] = list(products)
    return orjson.dumps(message).decode()


class Coinbase(VendorStream):
    name = "coinbase"
    label = "Coinbase Advanced Trade"
    URL = "wss://advanced-trade-ws.coinbase.com"
    SILENCE = 5.0  # heartbeats come every second

    def __init__(self, url: str = "", **options: Any) -> None:
        super().__init__(url, **options)
        self.gaps = 0  # messages lost, over every connection
        self.last_seq: int | None = None  # on this connection
        self.gapped = False  # this connection has lost messages (and said so)

    async def opened(self, ws: ClientConnection) -> None:
        self.last_seq, self.gapped = None, False
        await ws.send(frame("subscribe", "heartbeats"))

    def subscribe(self, symbols: Sequence[str]) -> list[str]:
        return [frame("subscribe", "ticker", symbols)]

    def unsubscribe(self, symbols: Sequence[str]) -> list[str]:
        return [frame("unsubscribe", "ticker", symbols)]

    def receive(self, message: str | bytes, sink: Sink) -> None:
        envelope = orjson.loads(message)
        if envelope.get("type") == "error":
            log.error("coinbase error: %s", envelope.get("message"))
            return
        self.sequence(envelope["sequence_num"])
        channel = envelope["channel"]
        if channel == "ticker":
            at_ms = rfc3339_ms(envelope["timestamp"])
            tickers = [item for event in envelope["events"] for item in event["tickers"]]
            self.each(tickers, lambda item: self.tick(item, at_ms, sink))
        elif channel == "subscriptions":
            log.info("coinbase: subscribed %s", envelope["events"][0]["subscriptions"])

    def tick(self, item: dict[str, Any], at_ms: int, sink: Sink) -> None:
        if ticker := self.ticker(item["product_id"]):
            sink.trade(Tick(ticker, price(item["price"]), 0, at_ms))

    def sequence(self, seq: Any) -> None:
        """Count the messages a jump in ``sequence_num`` says were lost; log the first jump once."""
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"sequence_num {seq!r} is not a count")
        last, self.last_seq = self.last_seq, seq if self.last_seq is None else max(seq, self.last_seq)
        if last is not None and seq > last + 1:
            if not self.gapped:
                log.warning("coinbase: %d message(s) lost before sequence_num %d; further gaps on this "
                            "connection are only counted", seq - last - 1, seq)
            self.gapped = True
            self.gaps += seq - last - 1
