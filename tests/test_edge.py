"""The edge's reading of the hub, in process: ``/api/hello/``'s ETag, ``/api/quotes/``'s
``symbols``, ``If-None-Match: *``, and health's reading of a quiet market. Each view gets an
ASGI request whose scope carries services built here (``ticker.web.services.attach``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from django.test import AsyncRequestFactory
from prometheus_client import CollectorRegistry

from tests.helpers.waiting import eventually
from ticker import protocol as p
from ticker.fanout.hub import Hub
from ticker.fanout.types import Batch, Catalog, Event, Rejoined
from ticker.layer.store import MemoryStore
from ticker.web import health, views
from ticker.web.services import attach

HALTED = {"state": "halted", "reason": "test", "since_ms": 1}


def entries(*tickers: str, paused: bool = False) -> list[dict]:
    return [{"s": t, "name": t, "paused": paused} for t in tickers]


def catalog(items: list[dict], status: dict | None = None) -> Catalog:
    return Catalog(frozenset(e["s"] for e in items), items, status or {"state": "open", "reason": ""})


@dataclass
class Edge:
    """What the views read of a process: its hub, a store, a registry; and its hub's events."""

    hub: Hub
    store: MemoryStore
    metrics: CollectorRegistry
    events: asyncio.Queue[Event]

    async def announce(self, listing: Catalog) -> None:
        """A catalog change, as the layer brings it; back when the hub has it."""
        await self.events.put(listing)
        await eventually(lambda: self.hub.catalog == listing, 2, 0.002, "the hub to take the catalog")


async def edge_for(items: list[dict], status: dict | None = None, node: str = "web1",
                   rows: list[list] | None = None) -> Edge:
    """A started hub whose catalog is ``items`` (and state ``rows``, batch 1 of epoch ``e1``)."""
    store = MemoryStore()
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def load_catalog() -> Catalog:
        return catalog(items, status)

    async def events() -> AsyncIterator[Event]:
        while True:
            yield await queue.get()

    hub = Hub(p.QuoteCodec(node), store.load, load_catalog, events, max_keys=p.MAX_SYMBOLS)
    await hub.start()
    if rows:
        await store.save("e1", 1, rows)
        await queue.put(Rejoined())
        await asyncio.wait_for(hub.synced.wait(), 2)
    return Edge(hub, store, CollectorRegistry(), queue)


@pytest.fixture
async def edges():
    made: list[Edge] = []

    async def make(*args, **kwargs) -> Edge:
        made.append(await edge_for(*args, **kwargs))
        return made[-1]

    yield make
    for edge in made:
        await edge.hub.stop()


def get(edge: Edge, path: str, **headers: str):
    request = AsyncRequestFactory().get(path, headers=headers)
    request.scope = attach(request.scope, edge)
    return request


def body(response) -> dict:
    return json.loads(response.content)


def row(sym: str) -> list:
    return [sym, 10.0, 10.0, 10.0, 10.0, 10.0, 100, int(time.time() * 1000)]


async def test_the_hello_etag_differs_for_two_lists_with_the_same_version(edges):
    one = await edges(entries("AAPL", "MSFT"), node="web1")
    other = await edges(entries("AAPL", "NVDA"), node="web2")
    # Each process counts its own catalog changes: both are at the same count here.
    assert one.hub.replica.catalog_version == other.hub.replica.catalog_version
    first = (await views.hello(get(one, "/api/hello/")))["ETag"]
    second = (await views.hello(get(other, "/api/hello/")))["ETag"]
    assert first != second


async def test_the_hello_etag_is_the_same_for_one_list_on_two_processes(edges):
    one = await edges(entries("AAPL", "MSFT"), node="web1")
    other = await edges(entries("AAPL", "MSFT"), node="web2")
    await one.announce(catalog(entries("AAPL", "MSFT", "NVDA")))  # a change, and back: counted twice
    await one.announce(catalog(entries("AAPL", "MSFT")))
    tag = (await views.hello(get(one, "/api/hello/")))["ETag"]
    assert (await views.hello(get(other, "/api/hello/")))["ETag"] == tag
    answer = await views.hello(get(other, "/api/hello/", if_none_match=tag))
    assert answer.status_code == 304 and answer["ETag"] == tag
    halted = await edges(entries("AAPL", "MSFT"), HALTED)  # the market's state is in the hello too
    assert (await views.hello(get(halted, "/api/hello/")))["ETag"] != tag


async def test_the_hello_etag_changes_when_the_feed_names_its_source(edges):
    edge = await edges(entries("AAPL"), rows=[row("AAPL")])
    before = (await views.hello(get(edge, "/api/hello/")))["ETag"]
    await edge.events.put(Batch("e1", 2, [row("AAPL")], (), int(time.time() * 1000), source="Alpaca (iex)"))
    await eventually(lambda: edge.hub.source, 2, 0.002, "the batch")
    answer = await views.hello(get(edge, "/api/hello/", if_none_match=before))
    assert answer.status_code == 200 and body(answer)["source"] == "Alpaca (iex)"  # a polling page hears it


async def test_if_none_match_star_is_a_304_on_both_etag_endpoints(edges):
    edge = await edges(entries("AAPL"), rows=[row("AAPL")])
    for view, path in ((views.hello, "/api/hello/"), (views.quotes, "/api/quotes/")):
        answer = await view(get(edge, path, if_none_match="*"))
        assert answer.status_code == 304 and answer["ETag"]
        assert (await view(get(edge, path, if_none_match='"other"'))).status_code == 200


async def test_quotes_reads_symbols_as_the_event_stream_does(edges):
    names = [f"S{i}" for i in range(p.MAX_SYMBOLS + 1)]
    edge = await edges(entries(*names), rows=[row(n) for n in names])
    every = await views.quotes(get(edge, "/api/quotes/?symbols=*"))
    assert every.status_code == 200 and len(body(every)["q"]) == len(names)
    repeated = await views.quotes(get(edge, "/api/quotes/?symbols=" + ",".join(["s1", "S1"] * 200)))
    assert repeated.status_code == 200 and [r[0] for r in body(repeated)["q"]] == ["S1"]
    too_many = await views.quotes(get(edge, "/api/quotes/?symbols=" + ",".join(names)))
    assert too_many.status_code == 400 and body(too_many)["code"] == p.ERR_TOO_MANY_SYMBOLS


async def test_a_huge_name_is_not_echoed_back_in_full(edges):
    edge = await edges(entries("AAPL"), rows=[row("AAPL")])
    bad = await views.quotes(get(edge, "/api/quotes/?symbols=" + "A" * 15_000))
    assert bad.status_code == 400 and len(bad.content) < 200
    unknown = await views.quotes(get(edge, "/api/quotes/?symbols=AAPL,NOPE"))
    assert unknown.status_code == 404 and "NOPE" in body(unknown)["msg"]
    assert len(str(p.unknown_symbols(["X" * 15_000]))) < 100


@pytest.mark.parametrize(("items", "status", "state"), [
    (entries("AAPL"), None, health.Feed.STALE),
    (entries("AAPL"), HALTED, health.Feed.HALTED),
    (entries("AAPL", paused=True), None, health.Feed.IDLE),
    ([], None, health.Feed.IDLE),
])
async def test_a_silent_feed_is_stale_only_when_the_market_should_tick(edges, items, status, state):
    edge = await edges(items, status)
    assert health.feed_state(edge.hub) is state
