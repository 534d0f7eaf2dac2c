"""Baseline (e), the floor: picows, a WebSocket server whose framing and writes are in C.

The plain ``websockets`` ceiling with the Python left out of the path of every frame: the same
in-process market (``market.py``), each batch's frame encoded once and handed to every
connection's ``WSTransport.send`` (picows builds the frame header and writes it in C, on
aiofastnet's transport), on uvloop. What is left in Python is one call per connection per batch,
so this is the least a Python process can spend to fan a batch out: the floor the other paths are
measured against, handshakes included (picows parses the upgrade request in C too).

The same v1 shape as ``plain_ws``: ``hello`` on connect, then ``q`` batches; the whole board until
``{"op":"sub","symbols":[...]}``, ``"*"`` back to it, ``{"op":"ping"}`` answered; no ``snap``, no
limits, WebSocket pings answered by picows; the accept queue ours has (``dashboard.serve.BACKLOG``).

Run: ``python -m benchmarks.baseline.picows_server --port P --symbols 50 --rate 200 --batch-ms 100``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import orjson
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from dashboard.serve import BACKLOG

from .market import Batch, BatchedMarket, Subscriptions, batched_market_parser, hello_message, node_name

log = logging.getLogger("picows_server")


class FloorServer:
    """The market's batches to every connection: one ``send`` per connection per frame."""

    def __init__(self, market: BatchedMarket) -> None:
        self.market = market
        self.node = node_name("picows")
        self.subs: Subscriptions[WSTransport] = Subscriptions(s.ticker for s in market.symbols)

    def publish(self, batch: Batch) -> None:
        """Send one batch: one frame to the whole board, one per distinct watchlist that it touches."""
        for frame, conns in self.subs.frames(batch):
            data = frame.encode()
            for transport in tuple(conns):  # a failed write may unregister its connection
                transport.send(WSMsgType.TEXT, data)

    def listener(self, request: WSUpgradeRequest) -> WSListener:
        """Every request path gets the market (picows calls this for each upgrade request)."""
        return Connection(self)


class Connection(WSListener):
    """One connection: hello, whole board, then obey ``sub`` and ``ping``; a close is answered."""

    def __init__(self, server: FloorServer) -> None:
        self.server = server

    def on_ws_connected(self, transport: WSTransport) -> None:
        market = self.server.market
        # Synchronous from here to the board: the first q this client gets is seq + 1, after the hello.
        transport.send(WSMsgType.TEXT, orjson.dumps(hello_message(market.epoch, market.seq, self.server.node,
                                                                  market.symbols)))
        self.server.subs.join(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            reply = self.server.subs.handle(transport, frame.get_payload_as_bytes())
            if reply is not None:
                transport.send(WSMsgType.TEXT, reply)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.subs.leave(transport)


async def serve_market(host: str, port: int, symbols: int, rate: float, batch_ms: int, seed: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    market = BatchedMarket(symbols, rate, seed)
    server = FloorServer(market)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    listening = await ws_create_server(server.listener, host, port, backlog=BACKLOG)
    log.warning("picows_server: %d symbols at %g ticks/s in %d ms batches on ws://%s:%d/",
                symbols, rate, batch_ms, host, port)
    feed = asyncio.create_task(market.run(server.publish, batch_ms))
    try:
        await stop.wait()
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
        listening.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = batched_market_parser(__doc__.splitlines()[0], port=8766)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(serve_market(args.host, args.port, args.symbols, args.rate, args.batch_ms, args.seed))


if __name__ == "__main__":
    main()
