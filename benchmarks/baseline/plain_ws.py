"""Baseline (c), the ceiling: plain ``websockets`` with the market in process, no Channels.

What is the least a Python server can spend to fan ticks out? One process, the batched
market of ``market.py`` in the same event loop, every batch encoded once and written to
every whole-board connection with ``websockets.asyncio.server.broadcast`` (a synchronous
write to each transport: no task, no queue, no await per client). Custom watchlists get a
frame filtered from the batch's pre-encoded rows; connections with the same subscription set
share it. No channel layer, no Redis, no ASGI. This is deliberately the cheapest correct
design, the figure the other paths are measured against, not a tutorial's code.

Frames are protocol v1 (docs/PROTOCOL.md): ``hello`` on connect, then ``q`` batches; a new
connection gets the whole board until it sends ``{"op":"sub","symbols":[...]}``, and
``{"op":"sub","symbols":"*"}`` puts it back on the whole board. No ``snap`` is sent, and no
limits are enforced. It listens with the accept queue ours has (``dashboard.serve.BACKLOG``), not
the library's 100: a reconnect storm then compares the servers, not their defaults.

Run: ``python -m benchmarks.baseline.plain_ws --port P --symbols 50 --rate 200 --batch-ms 100``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from dashboard.serve import BACKLOG

from .market import (
    Batch,
    BatchedMarket,
    Subscriptions,
    batched_market_parser,
    hello_message,
    node_name,
)

log = logging.getLogger("plain_ws")


class PlainServer:
    """The market's batches to every connection, through ``broadcast``."""

    def __init__(self, market: BatchedMarket) -> None:
        self.market = market
        self.node = node_name("plain_ws")
        self.subs: Subscriptions[ServerConnection] = Subscriptions(s.ticker for s in market.symbols)

    def publish(self, batch: Batch) -> None:
        """Send one batch: one frame to the whole board, one per distinct watchlist that it touches."""
        for frame, conns in self.subs.frames(batch):
            broadcast(conns, frame)

    async def handler(self, ws: ServerConnection) -> None:
        """One connection: hello, whole board, then obey ``sub`` and ``ping`` until it closes."""
        hello = orjson.dumps(hello_message(self.market.epoch, self.market.seq, self.node, self.market.symbols))
        # No await between reading seq and joining the board, and send() writes before it
        # suspends: the first q this client gets is seq + 1, after the hello.
        self.subs.join(ws)
        try:
            await ws.send(hello.decode())
            async for message in ws:
                reply = self.subs.handle(ws, message)
                if reply is not None:
                    await ws.send(reply.decode())
        except ConnectionClosed:
            pass
        finally:
            self.subs.leave(ws)


async def serve_market(host: str, port: int, symbols: int, rate: float, batch_ms: int, seed: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    market = BatchedMarket(symbols, rate, seed)
    server = PlainServer(market)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(server.handler, host, port, compression=None, backlog=BACKLOG):
        log.warning("plain_ws: %d symbols at %g ticks/s in %d ms batches on ws://%s:%d/",
                    symbols, rate, batch_ms, host, port)
        feed = asyncio.create_task(market.run(server.publish, batch_ms))
        await stop.wait()
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed


def main(argv: Sequence[str] | None = None) -> None:
    parser = batched_market_parser(__doc__.splitlines()[0], port=8765)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="event loop (no measurable difference: broadcast writes synchronously)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    coro = serve_market(args.host, args.port, args.symbols, args.rate, args.batch_ms, args.seed)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
