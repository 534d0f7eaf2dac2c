"""End to end with real processes: daphne (embedded, and two on one real Redis with runfeed),
real WebSocket clients, the real admin over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request

import pytest
import websockets

from tests.helpers.admin import AdminClient
from tests.helpers.clients import Ws, get_json
from tests.helpers.figures import figure
from tests.helpers.streams import assert_same_stream, q_frames
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


async def assert_live_stream(url: str) -> None:
    ws = await Ws.open(url)
    await ws.send({"op": "sub", "symbols": "*"})
    snap = await ws.until(lambda f: f["t"] == "snap")
    assert len(snap["q"]) == len(ws.hello["symbols"]) == 42
    seqs = [(await ws.until(lambda f: f["t"] == "q"))["seq"] for _ in range(5)]
    assert seqs == list(range(seqs[0], seqs[0] + 5)) and seqs[0] > snap["seq"] - 1
    await ws.close()


# The embedded default: no Redis at all.


async def test_embedded_mode_streams_quotes_without_redis(embedded_site):
    await assert_live_stream(embedded_site.ws_url)


def test_embedded_mode_health_snapshot_and_page(embedded_site):
    assert get_json(embedded_site.url + "/healthz") == (200, {"status": "ok"})  # terse in public
    status, detail = get_json(embedded_site.url + "/internal/status")  # loopback: the details
    assert status == 200 and detail["layer"] == "reachable" and detail["clients"] >= 0 and detail["node"]
    status, snap = get_json(embedded_site.url + "/api/quotes/?symbols=AAPL,msft")
    assert status == 200 and [r[0] for r in snap["q"]] == ["AAPL", "MSFT"]
    status, err = get_json(embedded_site.url + "/api/quotes/?symbols=NOPE")
    assert status == 404 and err["code"] == "unknown_symbol"
    with urllib.request.urlopen(embedded_site.url + "/", timeout=10) as resp:
        page = resp.read().decode()
    assert "AAPL" in page and "Apple Inc." in page


def test_embedded_mode_writes_one_minute_candles(embedded_site):
    def candles():
        status, body = get_json(embedded_site.url + "/api/candles/AAPL/?interval=1m&limit=5")
        assert status == 200
        return body["candles"]

    deadline = time.monotonic() + 15
    while not candles() and time.monotonic() < deadline:
        time.sleep(0.25)
    start, open_, high, low, close, volume = candles()[-1]
    assert start % 60_000 == 0 and low <= min(open_, close) <= max(open_, close) <= high and volume > 0
    assert get_json(embedded_site.url + "/api/candles/AAPL/?interval=5m")[0] == 400
    assert get_json(embedded_site.url + "/api/candles/NOPE/")[0] == 404


async def test_other_servers_stream_quotes_too(other_embedded_site):
    await assert_live_stream(other_embedded_site.ws_url)
    status, health = await asyncio.to_thread(get_json, other_embedded_site.url + "/internal/status")
    assert status == 200 and health["direct"] == 0  # no fast path: every frame through ASGI send
    ws = await Ws.open(other_embedded_site.ws_url)
    if "uvicorn" in other_embedded_site.procs["web"].argv:
        assert ws.hello["limits"]["ack_ms"] > 0  # the buffer is not reported: clients are asked to ack
    else:
        assert ws.hello["limits"]["ack_ms"] == 0  # daphne's link reports the buffer, fast path or not
    await ws.close()


async def test_daphne_serves_clients_on_its_fast_path(embedded_site):
    ws = await Ws.open(embedded_site.ws_url)
    await ws.send({"op": "sub", "symbols": "*"})
    await ws.until(lambda f: f["t"] == "q")
    status, health = await asyncio.to_thread(get_json, embedded_site.url + "/internal/status")
    assert status == 200 and health["direct"] >= 1
    assert ws.hello["limits"]["ack_ms"] == 0  # Twisted reports its buffer: no acks needed
    await ws.close()


async def test_on_the_fast_path_a_client_that_stops_reading_is_skipped_then_resynced(embedded_site):
    """Twisted's own backpressure: a full send buffer pauses the client; draining it resyncs."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
    sock.connect(("127.0.0.1", int(embedded_site.url.rsplit(":", 1)[1])))
    conn = await websockets.connect(embedded_site.ws_url, sock=sock, max_queue=1, open_timeout=10)
    hello = json.loads(await conn.recv())
    # Ask for whole-board snapshots (3-4 KB each) at the allowed rate and read nothing.
    deadline = time.monotonic() + 20
    while (await asyncio.to_thread(get_json, embedded_site.url + "/internal/status"))[1]["held"] != 1:
        assert time.monotonic() < deadline, "the server never noticed the client stopped reading"
        await conn.send(json.dumps({"op": "sub", "symbols": "*"}))
        await asyncio.sleep(1 / 9)
    status = embedded_site.url + "/internal/status"
    blocked_at = (await asyncio.to_thread(get_json, status))[1]["seq"]
    await eventually(  # stay blocked for ten batches
        lambda: asyncio.to_thread(lambda: get_json(status)[1]["seq"] >= blocked_at + 10), 10
    )
    # Read it all: once drained, it is back, with a snapshot of the whole board first.
    frames: list[dict] = []

    async def read() -> None:
        while True:
            frames.append(json.loads(await conn.recv()))

    reader = asyncio.create_task(read())
    deadline = time.monotonic() + 20
    while (await asyncio.to_thread(get_json, embedded_site.url + "/internal/status"))[1]["held"] != 0:
        assert time.monotonic() < deadline, "the client never came back"
        await asyncio.sleep(0.1)
    deadline = time.monotonic() + 5
    while not any(f["t"] == "q" for f in frames[-3:]) or frames[-1]["t"] != "q":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    reader.cancel()
    last_snap = max(i for i, f in enumerate(frames) if f["t"] == "snap")
    skipped_to = frames[last_snap]["seq"]
    before = [f["seq"] for f in frames[:last_snap] if f["t"] == "q"]
    after = [f["seq"] for f in frames[last_snap + 1:] if f["t"] == "q"]
    assert 0 < len(frames[last_snap]["q"]) <= len(hello["symbols"])  # what changed while it was held
    assert before and skipped_to > before[-1] + 1  # batches were skipped while it was blocked...
    assert after == list(range(skipped_to + 1, skipped_to + 1 + len(after)))  # ...then it goes on
    await conn.close()


async def test_a_client_that_stops_acking_is_paused_and_resynced_when_it_catches_up(other_embedded_site):
    from ticker.fanout.holds import ACK_TIMEOUT

    embedded_site = other_embedded_site
    ws = await Ws.open(embedded_site.ws_url)
    await ws.send({"op": "sub", "symbols": "*"})
    last = (await ws.until(lambda f: f["t"] == "q"))["seq"]
    await ws.send({"op": "ack", "seq": last})
    # Stop reading and acknowledging: the server pauses this client instead of buffering for it.
    deadline = time.monotonic() + ACK_TIMEOUT + 5
    while (await asyncio.to_thread(get_json, embedded_site.url + "/internal/status"))[1]["held"] != 1:
        assert time.monotonic() < deadline, "the silent client was never paused"
        await asyncio.sleep(0.25)
    # Catch up on what was sent before the pause, then say so: a snapshot, and the stream again.
    frames = []
    while True:
        try:
            frames.append(await ws.recv(timeout=0.5))
        except TimeoutError:
            break
    got = [f["seq"] for f in frames if f["t"] == "q"]
    assert got == list(range(last + 1, last + 1 + len(got)))  # nothing lost before the pause
    await ws.send({"op": "ack", "seq": got[-1] if got else last})
    snap = await ws.until(lambda f: f["t"] == "snap")
    assert 0 < len(snap["q"]) <= 42 and snap["seq"] > (got[-1] if got else last)  # what changed meanwhile
    following = await ws.until(lambda f: f["t"] == "q")
    assert following["seq"] > snap["seq"]
    assert (await asyncio.to_thread(get_json, embedded_site.url + "/internal/status"))[1]["held"] == 0
    await ws.close()


# The scaled mode: two daphne processes on one real Redis, fed by runfeed.


async def test_redis_mode_streams_quotes(redis_site):
    await assert_live_stream(redis_site.ws_url)


async def test_two_daphne_processes_deliver_the_same_seq_stream(redis_site):
    urls = [f"ws://127.0.0.1:{redis_site.procs[name].port}/ws/quotes/" for name in ("web1", "web2")]
    clients = [await Ws.open(url) for url in urls]
    assert clients[0].hello["node"] != clients[1].hello["node"]
    assert clients[0].hello["epoch"] == clients[1].hello["epoch"]
    for ws in clients:
        await ws.send({"op": "sub", "symbols": "*"})
        await ws.until(lambda f: f["t"] == "snap")
    streams = [await q_frames(ws, 10) for ws in clients]
    for ws in clients:
        await ws.close()
    assert_same_stream(*streams)


async def test_admin_add_pause_and_delete_reach_open_connections(redis_site):
    web2 = f"http://127.0.0.1:{redis_site.procs['web2'].port}"
    admin = AdminClient(web2)
    ws = await Ws.open(redis_site.ws_url)  # on web1: the change crosses processes through Redis
    await ws.send({"op": "sub", "symbols": "*"})
    await ws.until(lambda f: f["t"] == "snap")

    started = time.monotonic()
    await asyncio.to_thread(admin.add_symbol, "ZZTOP", "ZZ Top Holdings", "42.00")
    sym = await ws.until(lambda f: f["t"] == "sym", timeout=3)
    # The admin POST itself is inside this figure.
    figure("admin add: the new list on an open page", time.monotonic() - started, target=1.5, limit=3.0)
    assert "ZZTOP" in {s["s"] for s in sym["symbols"]}
    row = await ws.until(lambda f: f["t"] == "q" and any(r[0] == "ZZTOP" for r in f["q"]), timeout=10)
    assert row["seq"] > 0

    await asyncio.to_thread(admin.set_active, "ZZTOP", False)
    sym = await ws.until(lambda f: f["t"] == "sym", timeout=3)
    assert next(s for s in sym["symbols"] if s["s"] == "ZZTOP")["paused"] is True
    # Let the batches that were in flight go by, then watch for two seconds: no ticks for a paused symbol.
    for _ in range(2):
        await ws.until(lambda f: f["t"] == "q")
    watched_from = time.monotonic()
    while time.monotonic() - watched_from < 2.0:
        frame = await ws.recv()
        assert not (frame["t"] == "q" and any(r[0] == "ZZTOP" for r in frame["q"]))

    await asyncio.to_thread(admin.delete_symbol, "ZZTOP")
    sym = await ws.until(lambda f: f["t"] == "sym", timeout=3)
    assert "ZZTOP" not in {s["s"] for s in sym["symbols"]}
    await ws.close()


async def test_unknown_symbol_gets_err_and_the_stream_goes_on(redis_site):
    ws = await Ws.open(redis_site.ws_url)
    await ws.send({"op": "sub", "symbols": ["NOPE", "AAPL"]})
    err = await ws.until(lambda f: f["t"] == "err")
    assert err["code"] == "unknown_symbol"
    await ws.until(lambda f: f["t"] == "q" and f["q"][0][0] == "AAPL", timeout=10)
    await ws.close()


def test_redis_mode_health(redis_site):
    for name in ("web1", "web2"):
        status, health = get_json(f"http://127.0.0.1:{redis_site.procs[name].port}/internal/status")
        assert status == 200 and health["feed_age_s"] < 2


@pytest.mark.parametrize("proc", ["feed", "web1", "web2"])
def test_processes_are_still_up(redis_site, proc):
    assert redis_site.procs[proc].alive(), redis_site.procs[proc].output()[-2000:]
