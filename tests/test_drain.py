"""The drain on SIGTERM (dashboard/drain.py), through real daphne and real uvicorn: every
WebSocket is closed with 1012, every event stream ends with a ``retry:`` hint, nothing new is
served, and the process exits long before its deadline (an event stream does not hold it)."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
import websockets

from tests.helpers.figures import figure
from tests.helpers.sites import SERVERS, embedded_as
from tests.helpers.sse import Event, SseClient
from ticker import protocol as p

pytestmark = pytest.mark.integration

CLIENTS = 40
STREAMS = 3
DEADLINE = 20  # TICKER_DRAIN_SECONDS: far above what a drain takes, so one that waited for it shows


@pytest.fixture(params=list(SERVERS))
def served(request, tmp_path, seeded_database):
    """A site of its own (the test stops it) and the way it is served (daphne-asgi: every frame
    through ASGI sends, the close frame still past autobahn's check)."""
    with embedded_as(request.param, seeded_database, tmp_path, TICKER_DRAIN_SECONDS=str(DEADLINE)) as site:
        yield site, request.param


async def board_client(url: str, ready: asyncio.Event, count: list[int]) -> int | None:
    """A whole-board WebSocket client that reads everything until the server closes it; the close
    code it received (1006: none)."""
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "sub", "symbols": "*"}))
        try:
            async for raw in ws:
                if json.loads(raw)["t"] == "snap" and not ready.is_set():
                    count[0] += 1
                    if count[0] == CLIENTS:
                        ready.set()
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


def stream_tail(url: str) -> list[Event]:
    """An event stream read past its snap until the server ends it: the blocks after the snap."""
    client = SseClient(url, timeout=30)
    try:
        client.until(lambda e: e.kind == "snap")
        tail: list[Event] = []
        while True:
            try:
                tail.append(client.next())
            except ConnectionError:
                return tail
    finally:
        client.close()


async def attempt(url: str) -> str:
    """A new WebSocket after SIGTERM: ``refused``, ``not served`` (accepted, then dropped with no
    answer), or the close code that ended it."""
    try:
        async with websockets.connect(url, open_timeout=5) as ws:
            try:
                async for _ in ws:
                    pass
            except websockets.ConnectionClosed:
                pass
            return f"closed {ws.close_code}"
    except OSError:
        return "refused"
    except websockets.InvalidHandshake:
        return "not served"


async def test_sigterm_tells_every_client_to_reconnect_and_exits_long_before_the_deadline(served):
    site, server = served
    web = site.procs["web"]
    ready, count = asyncio.Event(), [0]
    clients = [asyncio.create_task(board_client(site.ws_url, ready, count)) for _ in range(CLIENTS)]
    streams = [asyncio.create_task(asyncio.to_thread(stream_tail, f"{site.url}/sse/quotes/?symbols=*"))
               for _ in range(STREAMS)]
    await asyncio.wait_for(ready.wait(), 30)
    signalled = time.monotonic()
    web.popen.send_signal(signal.SIGTERM)
    first = await asyncio.wait_for(next(asyncio.as_completed(clients)), 15)
    after = await attempt(site.ws_url)
    codes = await asyncio.wait_for(asyncio.gather(*clients), 15)
    tails = await asyncio.wait_for(asyncio.gather(*streams), 15)
    exited = await asyncio.to_thread(web.popen.wait, 30)
    took = time.monotonic() - signalled
    print(f"\n{server}: {CLIENTS} WebSockets and {STREAMS} event streams drained, exit {exited} after {took:.2f} s")
    assert first == p.WS_1012_SERVICE_RESTART
    assert codes == [p.WS_1012_SERVICE_RESTART] * CLIENTS
    for tail in tails:
        assert tail and tail[-1].retry.isdigit() and int(tail[-1].retry) < p.RESTART_JITTER_MS, tail[-3:]
    # After a 1012, nothing new is served: daphne has closed its listener first; uvicorn closes
    # its own within a tick, and one accepted meanwhile is dropped or sent away like the others.
    uvicorn = {"refused", "not served", f"closed {p.WS_1012_SERVICE_RESTART}"}
    assert after in ({"refused"} if server.startswith("daphne") else uvicorn)
    assert exited in (0, -signal.SIGTERM), web.tail()  # uvicorn ends by raising the signal it caught
    assert f"{CLIENTS + STREAMS} client(s) told to reconnect" in web.output(), web.tail()
    assert "still open after" not in web.output()
    figure(f"drain: {server} exits after SIGTERM ({CLIENTS} WebSockets, {STREAMS} event streams)", took,
           target=2.0, limit=9.0)
