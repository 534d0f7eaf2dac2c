"""Baseline (d): python-socketio under uvicorn, what a Python developer would pick instead.

The server a developer reaches for when they want "real-time" without Channels: a
``socketio.AsyncServer`` in ASGI mode, rooms for fan-out, ``emit`` to a room. Written the way
its documentation shows it: module-level ``sio`` with ``@sio.event`` handlers, one room for
the whole board (``quotes``) and one per symbol (``quotes.<SYM>``) for watchlists, the JSON
encoding python-socketio does by default, served by uvicorn (uvloop, the websockets-sansio
protocol, permessage-deflate off). It gets the same batched in-process market as the plain
``websockets`` ceiling (``market.py``): once per batch, ``await sio.emit("q", payload,
room="quotes")`` with the payload of a v1 ``q`` frame; a watchlist gets one event per changed
symbol, emitted to that symbol's room. Not optimised on purpose: it is the comparison.

Socket.IO wraps the v1 frames in its own packets: the client connects to
``/socket.io/?EIO=4&transport=websocket``, gets ``0{...}`` (Engine.IO open), sends ``40`` and
gets ``40{"sid":...}``, then ``42["hello",{...}]`` and ``42["q",{"t":"q","seq":N,"q":[...]}]``;
it must answer the server's ``2`` (ping) with ``3`` (pong). Client events: ``42["sub",
{"symbols":"*"|[...]}]``. ``always_connect=True`` makes the server accept the connection
before the connect handler runs, so the ``hello`` emitted there follows the ``40``.

Run: ``python -m benchmarks.baseline.socketio_server --port P --symbols 50 --rate 200 --batch-ms 100``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import socketio
import uvicorn
import uvloop

from .market import (
    Batch,
    BatchedMarket,
    batched_market_parser,
    hello_message,
    node_name,
)

BOARD_ROOM = "quotes"

sio = socketio.AsyncServer(async_mode="asgi", always_connect=True)
app = socketio.ASGIApp(sio)
market: BatchedMarket | None = None
node = node_name("socketio")


def symbol_room(symbol: str) -> str:
    """The room of one symbol's updates (a watchlist joins one per symbol)."""
    return f"{BOARD_ROOM}.{symbol}"


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    assert market is not None
    await sio.enter_room(sid, BOARD_ROOM)
    await sio.emit("hello", hello_message(market.epoch, market.seq, node, market.symbols), to=sid)


@sio.event
async def sub(sid: str, data: Any) -> None:
    assert market is not None
    wanted = data.get("symbols") if isinstance(data, dict) else None
    if wanted == "*":
        rooms = {BOARD_ROOM}
    elif isinstance(wanted, list):
        known = {s.ticker for s in market.symbols}
        rooms = {symbol_room(str(s).upper()) for s in wanted if str(s).upper() in known}
        if not rooms:
            return
    else:
        return
    for room in set(sio.rooms(sid)) - rooms - {sid}:
        await sio.leave_room(sid, room)
    for room in rooms:
        await sio.enter_room(sid, room)


async def publish(batch: Batch) -> None:
    """One batch: one emit to the whole board's room, one per changed symbol to its room."""
    await sio.emit("q", batch.payload(), room=BOARD_ROOM)
    for row in batch.rows:
        await sio.emit("q", {"t": "q", "seq": batch.seq, "q": [row]}, room=symbol_room(row[0]))


async def serve(host: str, port: int, symbols: int, rate: float, batch_ms: int, seed: int) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's own signal handling)."""
    global market
    market = BatchedMarket(symbols, rate, seed)
    config = uvicorn.Config(app, host=host, port=port, ws="websockets-sansio", ws_per_message_deflate=False,
                            log_level="warning", lifespan="off")
    logging.getLogger("socketio_server").warning(
        "socketio_server: %d symbols at %g ticks/s in %d ms batches on ws://%s:%d/socket.io/",
        symbols, rate, batch_ms, host, port)
    feed = asyncio.create_task(market.run(publish, batch_ms))
    try:
        await uvicorn.Server(config).serve()
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed


def main(argv: Sequence[str] | None = None) -> None:
    parser = batched_market_parser(__doc__.splitlines()[0], port=8001)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn.run(app, loop="uvloop", ...) would do the same, but the market must run in the
    # server's loop from the start (no lifespan hook with lifespan="off").
    uvloop.run(serve(args.host, args.port, args.symbols, args.rate, args.batch_ms, args.seed))


if __name__ == "__main__":
    main()
