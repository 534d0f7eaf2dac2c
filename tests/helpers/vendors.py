"""Fake market-data vendors on loopback: WebSocket servers in the test process that speak each
vendor's documented envelope (written from the vendors' published message formats).

Each fake keeps every frame its clients sent (``received``, parsed, per connection), sends only
what a client subscribed to, and can be told to misbehave: ``raw`` sends any text (a malformed
frame), ``drop`` closes the connection from the server's side, ``mute`` stops reading (so pings go
unanswered: a dead link that still looks open), ``outage`` closes every connection and holds new
ones in their handshake until ``restore`` (a vendor that went away and comes back) and, for
Coinbase, ``silent`` stops heartbeats.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

ALPACA_KEY, ALPACA_SECRET = "PKTEST", "secret-for-tests"


def rfc3339(at_ms: int) -> str:
    """A vendor's RFC 3339 time with nanoseconds: ``2024-01-02T14:30:00.123456789Z``."""
    whole = datetime.fromtimestamp(at_ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{at_ms % 1000:03d}456789Z"


class FakeVendor:
    """The server side shared by the fakes; a subclass answers the client's frames (``answer``)."""

    path = "/"

    def __init__(self) -> None:
        self.server: Server | None = None
        self.connections: list[ServerConnection] = []
        self.received: list[list[dict[str, Any]]] = []  # per connection, every parsed client frame
        self.subscribed: list[set[str]] = []  # per connection, what is subscribed now
        self.reachable = asyncio.Event()  # cleared: new connections wait in their handshake
        self.reachable.set()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = next(iter(self.server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}{self.path}"

    @property
    def ws(self) -> ServerConnection:
        return self.connections[-1]

    async def __aenter__(self) -> FakeVendor:
        # A muted connection never answers the close handshake: don't wait 10 s for it at the end.
        self.server = await serve(self.handler, "127.0.0.1", 0, compression=None, close_timeout=0.5,
                                  process_request=self.gate)
        return self

    async def gate(self, ws: ServerConnection, request: Request) -> None:
        """Let a handshake go on once the vendor is reachable."""
        await self.reachable.wait()

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.reachable.set()  # no handshake left waiting
        self.server.close()
        await self.server.wait_closed()

    async def handler(self, ws: ServerConnection) -> None:
        index = len(self.connections)
        self.connections.append(ws)
        self.received.append([])
        self.subscribed.append(set())
        try:
            await self.greet(ws, index)
            async for text in ws:
                frame = json.loads(text)
                self.received[index].append(frame)
                await self.answer(ws, index, frame)
        except ConnectionClosed:
            pass

    async def greet(self, ws: ServerConnection, index: int) -> None:
        """What the server sends as a client connects."""

    async def answer(self, ws: ServerConnection, index: int, frame: dict[str, Any]) -> None:
        raise NotImplementedError

    async def send(self, payload: Any) -> None:
        """Send a message (JSON-encoded) on the newest connection."""
        await self.ws.send(json.dumps(payload))

    async def raw(self, text: str) -> None:
        await self.ws.send(text)

    async def drop(self) -> None:
        """The server closes the newest connection (going away)."""
        await self.ws.close(1001, "going away")

    async def outage(self) -> None:
        """The vendor goes away: every connection is closed, and new ones wait until ``restore``."""
        self.reachable.clear()
        await asyncio.gather(*(ws.close(1001, "going away") for ws in self.connections))

    def restore(self) -> None:
        """The vendor is back: the handshakes that wait go on."""
        self.reachable.set()

    def mute(self) -> None:
        """Stop reading the newest connection: the client's pings go unanswered, nothing is said."""
        self.ws.transport.pause_reading()

    def subscription(self, index: int = -1) -> set[str]:
        """What connection ``index`` is subscribed to now; nothing while it has not connected."""
        return self.subscribed[index] if -len(self.subscribed) <= index < len(self.subscribed) else set()

    def frames(self, index: int = -1, **match: Any) -> list[dict[str, Any]]:
        """The client frames of a connection whose fields include ``match``."""
        return [f for f in self.received[index] if all(f.get(k) == v for k, v in match.items())]


class FakeAlpaca(FakeVendor):
    """Alpaca market data v2: greeting, ``auth``, ``subscribe``/``unsubscribe`` of trades and quotes,
    arrays of ``T``-keyed objects, the error frames (402 auth failed, 406 connection limit)."""

    path = "/v2/iex"

    def __init__(self, *, key: str = ALPACA_KEY, secret: str = ALPACA_SECRET, limit: int = 0) -> None:
        super().__init__()
        self.key, self.secret = key, secret
        self.limit = limit  # refuse connections past this many at once (0: no limit)
        self.trade_ids = itertools.count(1)

    async def greet(self, ws: ServerConnection, index: int) -> None:
        open_now = sum(1 for c in self.connections if c.state.name == "OPEN")
        if self.limit and open_now > self.limit:
            await ws.send(json.dumps([{"T": "error", "code": 406, "msg": "connection limit exceeded"}]))
            await ws.close()
            return
        await ws.send(json.dumps([{"T": "success", "msg": "connected"}]))

    async def answer(self, ws: ServerConnection, index: int, frame: dict[str, Any]) -> None:
        action = frame.get("action")
        if action == "auth":
            if (frame.get("key"), frame.get("secret")) != (self.key, self.secret):
                await ws.send(json.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
                await ws.close()
                return
            await ws.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
        elif action in ("subscribe", "unsubscribe"):
            change = set(frame.get("trades", []))
            if action == "subscribe":
                self.subscribed[index] |= change
            else:
                self.subscribed[index] -= change
            now = sorted(self.subscribed[index])
            await ws.send(json.dumps([{"T": "subscription", "trades": now, "quotes": now, "bars": [],
                                       "updatedBars": [], "dailyBars": [], "statuses": [], "lulds": [],
                                       "corrections": now, "cancelErrors": now}]))
        else:
            await ws.send(json.dumps([{"T": "error", "code": 400, "msg": "invalid syntax"}]))

    def trade(self, symbol: str, price: float, size: int, at_ms: int) -> dict[str, Any]:
        return {"T": "t", "S": symbol, "i": next(self.trade_ids), "x": "V", "p": price, "s": size,
                "c": ["@"], "t": rfc3339(at_ms), "z": "C"}

    def quote(self, symbol: str, bid: float, ask: float, at_ms: int) -> dict[str, Any]:
        return {"T": "q", "S": symbol, "bx": "V", "bp": bid, "bs": 1, "ax": "V", "ap": ask, "as": 2,
                "c": ["R"], "t": rfc3339(at_ms), "z": "C"}

    async def publish(self, *items: dict[str, Any]) -> None:
        """Send trades and quotes, as the vendor does: only those of subscribed symbols, in one array."""
        live = [item for item in items if item["S"] in self.subscribed[-1]]
        if live:
            await self.send(live)


class FakeCoinbase(FakeVendor):
    """Coinbase Advanced Trade: ``subscribe``/``unsubscribe`` per channel, the envelope with its
    per-connection ``sequence_num``, ``ticker`` events with string prices, ``heartbeats``."""

    def __init__(self, *, beat: float = 0.05, snapshot: dict[str, str] | None = None) -> None:
        super().__init__()
        self.beat = beat
        self.snapshot = snapshot or {}  # product -> price, sent as a ``snapshot`` event on subscribing
        self.silent = False  # no heartbeats while set
        self.beats = 0  # heartbeats sent
        self.sequence: list[itertools.count[int]] = []
        self.heartbeats: list[asyncio.Task[None]] = []

    async def greet(self, ws: ServerConnection, index: int) -> None:
        self.sequence.append(itertools.count())

    async def envelope(self, ws: ServerConnection, index: int, channel: str, events: list[Any]) -> None:
        await ws.send(json.dumps({"channel": channel, "client_id": "", "timestamp": rfc3339(1_700_000_000_000),
                                  "sequence_num": next(self.sequence[index]), "events": events}))

    async def answer(self, ws: ServerConnection, index: int, frame: dict[str, Any]) -> None:
        kind, channel = frame.get("type"), frame.get("channel")
        if kind not in ("subscribe", "unsubscribe") or channel not in ("ticker", "heartbeats"):
            await ws.send(json.dumps({"type": "error", "message": "Failure to subscribe"}))
            return
        if channel == "heartbeats" and kind == "subscribe":
            self.heartbeats.append(asyncio.create_task(self._beat(ws, index)))
        elif channel == "ticker":
            products = set(frame.get("product_ids", []))
            if kind == "subscribe":
                self.subscribed[index] |= products
            else:
                self.subscribed[index] -= products
        await self.envelope(ws, index, "subscriptions", [{"subscriptions": {
            "ticker": sorted(self.subscribed[index]), "heartbeats": ["heartbeats"]}}])
        if channel == "ticker" and kind == "subscribe" and (known := sorted(products & set(self.snapshot))):
            await self.tickers(*((product, self.snapshot[product]) for product in known), kind="snapshot")

    async def _beat(self, ws: ServerConnection, index: int) -> None:
        for counter in itertools.count(1):
            await asyncio.sleep(self.beat)
            if not self.silent:
                try:
                    await self.envelope(ws, index, "heartbeats", [{
                        "current_time": "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105",
                        "heartbeat_counter": counter}])
                    self.beats += 1
                except ConnectionClosed:
                    return

    async def tickers(self, *prices: tuple[str, str], kind: str = "update") -> None:
        """One ``ticker`` message with a ticker per ``(product_id, price)`` that is subscribed."""
        tickers = [{"type": "ticker", "product_id": product, "price": price, "volume_24_h": "12345.678",
                    "low_24_h": "1", "high_24_h": "999999", "low_52_w": "1", "high_52_w": "999999",
                    "price_percent_chg_24_h": "1.5", "best_bid": price, "best_bid_quantity": "0.5",
                    "best_ask": price, "best_ask_quantity": "0.5"}
                   for product, price in prices if product in self.subscribed[-1]]
        await self.envelope(self.ws, len(self.connections) - 1, "ticker", [{"type": kind, "tickers": tickers}])

    def lose(self, count: int) -> None:
        """Skip ``count`` sequence numbers on the newest connection: messages lost on the way."""
        for _ in range(count):
            next(self.sequence[-1])

    async def __aexit__(self, *exc: object) -> None:
        for task in self.heartbeats:
            task.cancel()
        await asyncio.gather(*self.heartbeats, return_exceptions=True)
        await super().__aexit__(*exc)


class FakeBinance(FakeVendor):
    """Binance spot: ``SUBSCRIBE``/``UNSUBSCRIBE`` of lower-case ``<symbol>@trade`` streams answered
    ``{"result":null,"id"}``, ``trade`` events with string prices, ``serverShutdown``."""

    path = "/ws"

    def __init__(self) -> None:
        super().__init__()
        self.trade_ids = itertools.count(1)

    async def answer(self, ws: ServerConnection, index: int, frame: dict[str, Any]) -> None:
        method, params = frame.get("method"), frame.get("params")
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            await ws.send(json.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": frame.get("id")}))
            return
        if method == "SUBSCRIBE":
            self.subscribed[index] |= set(params)
        else:
            self.subscribed[index] -= set(params)
        await ws.send(json.dumps({"result": None, "id": frame["id"]}))

    async def trade(self, symbol: str, price: str, quantity: str, at_ms: int) -> None:
        if f"{symbol.lower()}@trade" in self.subscribed[-1]:
            await self.send({"e": "trade", "E": at_ms + 1, "s": symbol, "t": next(self.trade_ids), "p": price,
                             "q": quantity, "T": at_ms, "m": True, "M": True})

    async def shutdown(self) -> None:
        await self.send({"e": "serverShutdown", "E": 1_700_000_000_000})
        await self.ws.close(1001, "server shutdown")
