"""Vendor prices and stale symbols through the whole path: the fake Coinbase and the fake Alpaca,
``runfeed --source coinbase`` and ``--source alpaca``, Redis, the hubs of a real daphne and a real
uvicorn, and every transport (WebSocket, SSE, polling) and ``watch``. Prices arrive with the
vendor's digits; a symbol its vendor stops sending goes stale while the others stay live (an
Alpaca symbol only quoted stays live, its price unchanged), and is live again when it trades; a
vendor that goes away makes every symbol stale at once, and they are live again when it is back
and they trade. A sequence gap the vendor leaves is counted in ``/metrics``."""

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
from ticker.feed.streams import DOWN_SECONDS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def coinbase(tmp_path_factory, seeded_database, redis_server):
    with vendor_site(seeded_database, tmp_path_factory.mktemp("stale"), redis_server.port, "stale-live") as site:
        yield site


@pytest.fixture(scope="module")
def alpaca(tmp_path_factory, seeded_database, redis_server):
    """On daphne alone: the coinbase site shows uvicorn the same path."""
    with vendor_site(seeded_database, tmp_path_factory.mktemp("stale-alpaca"), redis_server.port, "stale-alpaca",
                     "alpaca", servers=("daphne",)) as site:
        yield site


@pytest.fixture(params=["coinbase", "alpaca"])
def site(request) -> VendorSite:
    return request.getfixturevalue(request.param)


class Board:
    """A whole-board WebSocket client that keeps the last stale set, which symbols ticked, the last
    ``q`` row of each, and every price written in a ``q`` (as the wire writes it)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.stale: dict[str, int] | None = None  # None: no stale frame yet
        self.ticked: set[str] = set()
        self.rows: dict[str, list] = {}
        self.prices: set[str] = set()
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for text in self.ws:
            msg = orjson.loads(text)
            if msg["t"] == "stale":
                self.stale = msg["s"]
            elif msg["t"] == "q":
                self.ticked |= {r[0] for r in msg["q"]}
                self.rows.update((r[0], r) for r in msg["q"])
                self.prices |= written(msg)


def written(msg: dict) -> set[str]:
    """The prices of a ``q`` frame, as written on the wire (the shortest form of each double)."""
    return {orjson.dumps(r[1]).decode() for r in msg["q"]}


async def boards(site: VendorSite) -> list[Board]:
    out = []
    for server in site.servers:
        ws = await connect(site.url(server).replace("http", "ws") + "/ws/quotes/?v=1")
        await ws.send(json.dumps({"op": "sub", "symbols": "*"}))
        out.append(Board(ws))
    return out


async def close(clients: list[Board]) -> None:
    for board in clients:
        await board.ws.close()
        board.task.cancel()


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
    quotes = site.vendor == "alpaca"  # Alpaca quotes too: MSFT, only quoted from now on, stays live
    try:
        await eventually(lambda: all(b.ticked >= {"AAPL", "MSFT"} for b in clients), 60,
                         what=f"both symbols ticking:\n{site.feed.tail()}")
        assert all(not b.stale for b in clients)  # nothing stale while both tick
        silenced = time.monotonic()
        site.silence("AAPL")
        if quotes:
            site.quote_only("MSFT")
        await eventually(lambda: all(b.stale and "AAPL" in b.stale for b in clients), MARK_MS / 1000 + 20,
                         what=f"AAPL stale on {', '.join(site.servers)}")
        took = figure(f"{site.vendor}: silenced to stale, mark 2 s", time.monotonic() - silenced,
                      target=MARK_MS / 1000 + 1.5, limit=MARK_MS / 1000 + 20)
        assert took >= MARK_MS / 1000 * 0.5, f"stale after {took:.1f} s, before its mark of {MARK_MS} ms"
        for board in clients:
            assert set(board.stale) == {"AAPL"}  # MSFT still trades (or is quoted); the paused symbols are quiet
            assert board.stale["AAPL"] <= time.time() * 1000 - MARK_MS
            assert board.prices and board.prices <= site.sent  # the vendor's digits, on every server
        board_ticked = [set(b.ticked) for b in clients]
        msft = [list(b.rows["MSFT"]) for b in clients]  # only quoted for a mark by now, if quotes

        # Every other way to the board says the same.
        for server in site.servers:
            url = site.url(server)
            polled = get_json(url + "/api/quotes/")
            assert set(polled["stale"]) == {"AAPL"}
            assert get_json(url + "/api/quotes/?symbols=MSFT")["stale"] == {}
            events = await asyncio.to_thread(first_events, url, {"snap", "stale", "q"})
            assert set(events["stale"]["s"]) == {"AAPL"}
            assert written(events["q"]) <= site.sent
            assert metric(url, "ticker_stale_symbols") == 1
        watched = await asyncio.to_thread(
            subprocess.run, [PYTHON, "manage.py", "watch", "--url", site.url("daphne"), "--json", "--count", "2"],
            cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=60)
        assert watched.returncode == 0, watched.stderr
        shown = [json.loads(line) for line in watched.stdout.splitlines()]
        assert [set(m["s"]) for m in shown if m["t"] == "stale"] == [{"AAPL"}]
        if quotes:  # the quotes refreshed MSFT's time, never its price
            for board, before in zip(clients, msft, strict=True):
                assert board.rows["MSFT"][1:3] == before[1:3] and board.rows["MSFT"][3] > before[3]

        site.resume("AAPL")
        resumed = time.monotonic()
        await eventually(lambda: all(b.stale == {} for b in clients), 20, what="AAPL live again")
        figure(f"{site.vendor}: trading again to live", time.monotonic() - resumed, target=1.5, limit=20)
        assert all(ticked >= {"MSFT"} for ticked in board_ticked)
    finally:
        site.resume("MSFT")
        await close(clients)


async def test_a_vendor_that_goes_away_makes_every_symbol_stale_at_once_and_live_when_it_is_back(alpaca):
    site = alpaca
    clients = await boards(site)
    url = site.url("daphne")
    try:
        await eventually(lambda: all(b.ticked >= {"AAPL", "MSFT"} for b in clients) and metric(
            url, "ticker_feed_source_down") == 0, 60, what=f"both symbols ticking:\n{site.feed.tail()}")
        assert all(not b.stale for b in clients)
        gone = time.monotonic()
        site.outage()  # the vendor closes the feed's connection and answers no new one
        try:
            await eventually(lambda: all(b.stale and set(b.stale) == {"AAPL", "MSFT"} for b in clients), 30,
                             what="every symbol stale")
            figure("alpaca: vendor gone to every symbol stale", time.monotonic() - gone,
                   target=DOWN_SECONDS + 1, limit=30)
            assert metric(url, "ticker_feed_source_down") == 1  # the link, not a mark, made them stale
            assert set(get_json(url + "/api/quotes/")["stale"]) == {"AAPL", "MSFT"}
        finally:
            site.restore()
        back = time.monotonic()
        await eventually(lambda: all(b.stale == {} for b in clients), 30, what="every symbol live again")
        figure("alpaca: vendor back to live", time.monotonic() - back, target=2, limit=30)
        assert metric(url, "ticker_feed_source_down") == 0
        assert len(site.fake.connections) >= 2  # a new connection, logged in and subscribed again
    finally:
        await close(clients)


async def test_a_vendor_sequence_gap_is_counted_in_metrics(coinbase):
    site = coinbase
    before = metric(site.url("daphne"), "ticker_feed_gaps") or 0
    site.lose(3)

    def counted() -> bool:
        return all(metric(site.url(server), "ticker_feed_gaps") == before + 3 for server in site.servers)

    await eventually(lambda: asyncio.to_thread(counted), 30, 0.2, "the gap in /metrics")
