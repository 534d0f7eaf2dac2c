"""``manage.py watch``: against a real daphne, and reconnecting against small real servers."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import serve

from tests.helpers.procs import PYTHON, ROOT
from tests.helpers.waiting import eventually
from ticker.clients import watch as watch_module
from ticker.clients.rules import FAILURES_FOR_CAP, RESTART_JITTER_MS, reconnect_delay
from ticker.clients.watch import Watcher, WatchOptions

pytestmark = pytest.mark.integration

HELLO = {"t": "hello", "v": 1, "epoch": "E1", "seq": 3, "node": "fake:1",
         "symbols": [{"s": "AAPL", "name": "Apple Inc.", "prev": 100.0, "paused": False}]}


def snap(seq: int, price: float) -> dict:
    return {"t": "snap", "epoch": "E1", "seq": seq, "q": [["AAPL", price, 100.0, 100.0, price, 100.0, 10, 1]]}


def quote(seq: int, price: float) -> dict:
    return {"t": "q", "seq": seq, "q": [["AAPL", price, 20, 2]]}


def watch(site, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "watch", "--url", site.ws_url, *args],
        cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=timeout,
    )


@asynccontextmanager
async def websocket_server(handler) -> AsyncIterator[str]:
    """A real WebSocket server on a free loopback port that serves each connection with
    ``handler``; yields its URL."""
    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


@asynccontextmanager
async def http_server(handle) -> AsyncIterator[str]:
    """A bare HTTP server on a free loopback port (``handle`` reads the request and writes the
    response itself); yields its URL."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def watched(url: str, count: int, **options) -> tuple[Watcher, io.StringIO, io.StringIO]:
    """``watch --json --count COUNT`` on ``url`` run to its end: the watcher, what it printed, what it said."""
    out, err = io.StringIO(), io.StringIO()
    watcher = Watcher(WatchOptions(url=url, json=True, count=count, **options), out, err)
    await asyncio.wait_for(watcher.run(), 10)
    return watcher, out, err


def test_json_prints_one_server_message_a_line_and_stops_after_count(embedded_site):
    done = watch(embedded_site, "--count", "5", "--json")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(messages) >= 5
    assert messages[0]["t"] == "hello"
    assert sum(m["t"] in ("snap", "q") for m in messages) == 5
    seqs = [m["seq"] for m in messages if m["t"] in ("snap", "q")]
    assert seqs == sorted(seqs)


def test_over_sse_the_same_messages_come_and_the_count_stops_it(embedded_site):
    """The event stream of a real daphne, as a client behind a proxy that blocks WebSockets sees it."""
    done = watch(embedded_site, "AAPL", "MSFT", "--transport", "sse", "--count", "4", "--json")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert messages[0]["t"] == "hello" and sum(m["t"] in ("snap", "q") for m in messages) == 4
    assert {r[0] for m in messages if m["t"] in ("snap", "q") for r in m["q"]} <= {"AAPL", "MSFT"}


def test_named_symbols_narrow_the_stream(embedded_site):
    done = watch(embedded_site, "aapl", "MSFT", "--count", "4", "--json")
    assert done.returncode == 0, done.stderr
    rows = [r[0] for m in map(json.loads, done.stdout.splitlines()) if m["t"] in ("snap", "q") for r in m["q"]]
    assert rows and set(rows) <= {"AAPL", "MSFT"}


def test_trace_shows_the_upgrade_and_each_frames_header_bytes(embedded_site):
    done = watch(embedded_site, "--count", "3", "--trace")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "> GET /ws/quotes/?v=1 HTTP/1.1" in out
    assert "< HTTP/1.1 101 Switching Protocols" in out
    assert re.search(r"^< TEXT +81 7e [0-9a-f ]+ 4 B header, +\d+ B payload$", out, re.M), out  # hello: 16-bit length
    assert re.search(r"^> TEXT +81 [0-9a-f]{2}( [0-9a-f]{2}){4} +6 B header, +\d+ B payload masked$", out, re.M)
    assert '  {"op":"sub","symbols":"*"}' in out


def test_a_table_is_drawn_by_default(embedded_site):
    done = watch(embedded_site, "AAPL", "--count", "2")
    assert done.returncode == 0, done.stderr
    assert "AAPL" in done.stdout and "Chg %" in done.stdout


def test_bad_arguments_are_refused_before_connecting():
    done = subprocess.run([PYTHON, "manage.py", "watch", "not a ticker!"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "not a ticker" in done.stderr


@pytest.fixture
def no_wait(monkeypatch):
    monkeypatch.setattr(watch_module, "reconnect_delay", lambda code, failures, retry_ms=None: 0.01)


async def test_a_lost_connection_is_retried_and_resumed_from_epoch_and_seq(no_wait):
    """A real WebSocket server that drops the first connection after one quote."""
    received: list[dict] = []

    async def handler(ws):
        await ws.send(json.dumps(HELLO))
        received.append(json.loads(await ws.recv()))
        if len(received) == 1:
            await ws.send(json.dumps(snap(4, 101.0)))
            await ws.send(json.dumps(quote(5, 102.0)))
            return  # the connection drops
        await ws.send(json.dumps(snap(7, 103.0)))
        await ws.send(json.dumps(quote(8, 104.0)))
        await ws.wait_closed()

    async with websocket_server(handler) as url:
        watcher, out, err = await watched(url, 4)
    assert received == [{"op": "sub", "symbols": "*"}, {"op": "resume", "epoch": "E1", "seq": 5, "symbols": "*"}]
    assert watcher.state.seq == 8 and watcher.state.quotes["AAPL"].last == 104.0
    assert "reconnecting in" in err.getvalue()
    kinds = [json.loads(line)["t"] for line in out.getvalue().splitlines()]
    assert kinds == ["hello", "snap", "q", "hello", "snap", "q"]


async def test_a_close_that_needs_a_fix_waits_the_full_cap_and_says_so(monkeypatch):
    """A real WebSocket server that closes the first connection with 4008, as for a flood."""
    waits: list[int] = []
    monkeypatch.setattr(watch_module, "reconnect_delay",
                        lambda code, failures, retry_ms=None: waits.append(failures) or 0.01)
    connections = 0

    async def handler(ws):
        nonlocal connections
        connections += 1
        await ws.send(json.dumps(HELLO))
        await ws.recv()
        if connections == 1:
            await ws.close(4008, "flood")
            return
        await ws.send(json.dumps(snap(4, 101.0)))
        await ws.wait_closed()

    async with websocket_server(handler) as url:
        _, _, err = await watched(url, 1)
    assert waits == [FAILURES_FOR_CAP]  # the full cap, not the first step of the backoff
    assert "close 4008: the client sent what the server refuses" in err.getvalue()


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits the watcher chose before each reconnect (by the real rule)."""
    chosen: list[float] = []

    def spy(code, failures, retry_ms=None):
        chosen.append(reconnect_delay(code, failures, retry_ms=retry_ms))
        return chosen[-1]

    monkeypatch.setattr(watch_module, "reconnect_delay", spy)
    return chosen


async def test_a_restart_close_reconnects_at_once_and_resumes(waits):
    """A real WebSocket server that closes the first connection with 1012, as a server going away."""
    received: list[dict] = []

    async def handler(ws):
        await ws.send(json.dumps(HELLO))
        received.append(json.loads(await ws.recv()))
        if len(received) == 1:
            await ws.send(json.dumps(snap(4, 101.0)))
            await ws.close(1012, "restart")
            return
        await ws.send(json.dumps(snap(7, 103.0)))
        await ws.wait_closed()

    async with websocket_server(handler) as url:
        _, _, err = await watched(url, 2)
    assert received[1] == {"op": "resume", "epoch": "E1", "seq": 4, "symbols": "*"}
    assert len(waits) == 1 and 0 <= waits[0] < RESTART_JITTER_MS / 1000  # a jitter, not the backoff
    assert "close 1012: the server is restarting" in err.getvalue()


async def test_an_event_stream_ended_with_a_retry_hint_is_resumed_after_it(waits):
    """A real HTTP server that ends the first stream with ``retry: 40``, as a server going away."""
    requests: list[str] = []

    def chunk(text: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(text), text)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        if len(requests) == 1:
            writer.write(chunk(f"event: snap\nid: E1:4\ndata: {json.dumps(snap(4, 101.0))}\n\n".encode())
                         + chunk(b": restart\nretry: 40\n\n") + b"0\r\n\r\n")
        else:
            writer.write(chunk(f"event: snap\nid: E1:6\ndata: {json.dumps(snap(6, 103.0))}\n\n".encode()))
        await writer.drain()
        writer.close()

    async with http_server(handle) as url:
        await watched(url, 2, symbols=("AAPL",), transport="sse")
    assert "Last-Event-ID: E1:4\r\n" in requests[1]
    assert waits == [0.04]


async def test_sse_reads_the_same_frames_and_resumes_with_last_event_id(no_wait):
    """A real HTTP server speaking the SSE contract (chunked), dropped after the first events."""
    requests: list[str] = []

    def event(msg: dict, seq: int) -> bytes:
        text = f"event: {msg['t']}\nid: E1:{seq}\ndata: {json.dumps(msg)}\n\n".encode()
        return b"%x\r\n%s\r\n" % (len(text), text)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"d\r\n: heartbeat\n\n\r\n")
        if len(requests) == 1:
            writer.write(event(HELLO, 3) + event(snap(4, 101.0), 4) + event(quote(5, 102.0), 5) + b"0\r\n\r\n")
        else:
            writer.write(event(snap(6, 103.0), 6) + event(quote(7, 104.0), 7))
        await writer.drain()
        writer.close()

    async with http_server(handle) as url:  # a WebSocket URL: watch finds the event stream beside it
        watcher, out, _ = await watched(url.replace("http", "ws") + "/ws/quotes/", 4, symbols=("AAPL",),
                                        transport="sse")
    assert requests[0].startswith("GET /sse/quotes/?symbols=AAPL HTTP/1.1\r\n")
    assert "Accept: text/event-stream" in requests[0] and "Last-Event-ID" not in requests[0]
    assert "Last-Event-ID: E1:5\r\n" in requests[1]
    assert watcher.state.seq == 7 and watcher.state.quotes["AAPL"].last == 104.0
    assert [json.loads(line)["t"] for line in out.getvalue().splitlines()] == ["hello", "snap", "q", "snap", "q"]


async def test_a_server_without_the_sse_endpoint_is_reported_and_retried(no_wait):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    err = io.StringIO()
    async with http_server(handle) as url:
        task = asyncio.create_task(Watcher(WatchOptions(url=url, transport="sse", json=True, count=1),
                                           io.StringIO(), err).run())
        try:
            await eventually(lambda: err.getvalue().count("404 Not Found") >= 2, 4, what="a second try")
        finally:
            task.cancel()
    assert "SSEUnavailable: HTTP/1.1 404 Not Found (text/html)" in err.getvalue()
