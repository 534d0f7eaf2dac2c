"""A symbol its vendor stops sending goes stale, through the whole path: the fake Coinbase,
``runfeed --source coinbase``, Redis, the hubs of a real daphne and a real uvicorn, and every
transport (WebSocket, SSE, polling) and ``watch``; the others stay live, and it is live again
when it trades. A sequence gap the vendor leaves is counted in ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.request

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers.figures import figure
from tests.helpers.procs import PYTHON, ROOT
from tests.helpers.sse import SseClient
from tests.helpers.stale import MARK_MS, VendorSite, vendor_site
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

SERVERS = ("daphne", "uvicorn")


@pytest.fixture(scope="module")
def site(tmp_path_factory, seeded_database, redis_server):
    with vendor_site(seeded_database, tmp_path_factory.mktemp("stale"), redis_server.port, "stale-live") as site:
        yield site


class Board:
    """A whole-board WebSocket client that keeps the last stale set and which symbols ticked."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.stale: dict[str, int] | None = None  # None: no stale frame yet
        self.ticked: set[str] = set()
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for text in self.ws:
            msg = orjson.loads(text)
            if msg["t"] == "stale":
                self.stale = msg["s"]
            elif msg["t"] == "q":
                self.ticked |= {r[0] for r in msg["q"]}


async def boards(site: VendorSite) -> list[Board]:
    out = []
    for server in SERVERS:
        ws = await connect(site.url(server).replace("http", "ws") + "/ws/quotes/?v=1")
        await ws.send(json.dumps({"op": "sub", "symbols": "*"}))
        out.append(Board(ws))
    return out


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        found = re.search(rf"^{name} (\S+)$", resp.read().decode(), re.M)
    return float(found.group(1)) if found else None


def first_events(url: str, kinds: set[str]) -> dict[str, dict]:
    """The first event of each kind in ``kinds`` on a new event stream of the whole board."""
    client = SseClient(url + "/sse/quotes/")
    seen: dict[str, dict] = {}
    try:
        while not kinds <= seen.keys():
            event = client.next()
            if event.kind in kinds:
                seen.setdefault(event.kind, event.json())
    finally:
        client.close()
    return seen


async def test_a_silenced_symbol_goes_stale_within_its_mark_and_live_again_when_it_trades(site):
    clients = await boards(site)
    try:
        await eventually(lambda: all(b.ticked >= {"AAPL", "MSFT"} for b in clients), 60,
                         what=f"both symbols ticking:\n{site.feed.tail()}")
        assert all(not b.stale for b in clients)  # nothing stale while both tick
        silenced = time.monotonic()
        site.silence("BTC-USD")
        await eventually(lambda: all(b.stale and "AAPL" in b.stale for b in clients), MARK_MS / 1000 + 20,
                         what="AAPL stale on daphne and uvicorn")
        took = figure("silenced to stale, mark 2 s", time.monotonic() - silenced, target=MARK_MS / 1000 + 1.5,
                      limit=MARK_MS / 1000 + 20)
        assert took >= MARK_MS / 1000 * 0.5, f"stale after {took:.1f} s, before its mark of {MARK_MS} ms"
        for board in clients:
            assert set(board.stale) == {"AAPL"}  # MSFT still trades; the paused symbols are quiet
            assert board.stale["AAPL"] <= time.time() * 1000 - MARK_MS
        board_ticked = [set(b.ticked) for b in clients]

        # Every other way to the board says the same.
        for server in SERVERS:
            url = site.url(server)
            polled = get_json(url + "/api/quotes/")
            assert set(polled["stale"]) == {"AAPL"}
            assert get_json(url + "/api/quotes/?symbols=MSFT")["stale"] == {}
            events = await asyncio.to_thread(first_events, url, {"snap", "stale"})
            assert set(events["stale"]["s"]) == {"AAPL"}
            assert metric(url, "ticker_stale_symbols") == 1
        watched = await asyncio.to_thread(
            subprocess.run, [PYTHON, "manage.py", "watch", "--url", site.url("daphne"), "--json", "--count", "2"],
            cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=60)
        assert watched.returncode == 0, watched.stderr
        shown = [json.loads(line) for line in watched.stdout.splitlines()]
        assert [set(m["s"]) for m in shown if m["t"] == "stale"] == [{"AAPL"}]

        site.resume("BTC-USD")
        resumed = time.monotonic()
        await eventually(lambda: all(b.stale == {} for b in clients), 20, what="AAPL live again")
        figure("trading again to live", time.monotonic() - resumed, target=1.5, limit=20)
        assert all(ticked >= {"MSFT"} for ticked in board_ticked)
    finally:
        for board in clients:
            await board.ws.close()
            board.task.cancel()


async def test_a_vendor_sequence_gap_is_counted_in_metrics(site):
    before = metric(site.url("daphne"), "ticker_feed_gaps") or 0
    site.lose(3)

    def counted() -> bool:
        return all(metric(site.url(server), "ticker_feed_gaps") == before + 3 for server in SERVERS)

    await eventually(lambda: asyncio.to_thread(counted), 30, 0.2, "the gap in /metrics")
