"""The caps on long-lived connections, from outside against real daphne and uvicorn: one budget
per address for WebSockets and event streams together, and a per-process cap whose answer
("server full": 4013 for a WebSocket, 503 with Retry-After for a stream) leaves the clients
already connected served. Loopback is counted like any address; 127.0.0.2 and 127.0.0.3 are
other client addresses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.helpers.clients import get_json
from tests.helpers.rawws import OP_CLOSE, OP_TEXT, RawWs
from tests.helpers.sites import Site, embedded
from tests.helpers.sse import SseClient
from tests.helpers.waiting import wait_until
from ticker import protocol as p

pytestmark = pytest.mark.integration

PER_ADDRESS = 3
PER_PROCESS = 5


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def site(request, tmp_path_factory, seeded_database) -> Iterator[Site]:
    with embedded(seeded_database, tmp_path_factory.mktemp(f"capacity-{request.param}"), server=request.param,
                  TICKER_LIMIT_EXEMPT="", TICKER_WS_PER_ADDRESS=str(PER_ADDRESS), TICKER_WS_RATE_PER_ADDRESS="0",
                  TICKER_MAX_CONNECTIONS=str(PER_PROCESS)) as site:
        yield site


def port(site: Site) -> int:
    number = site.procs["web"].port
    assert number is not None
    return number


def websocket(site: Site, source: str = "127.0.0.1") -> RawWs:
    """A WebSocket that got its ``hello``; raises ConnectionError when the handshake is refused."""
    ws = RawWs("127.0.0.1", port(site), source=source)
    opcode, payload = ws.recv_frame()
    if opcode == OP_CLOSE:
        ws.close()
        raise ConnectionError(f"closed at once: {int.from_bytes(payload[:2], 'big')} {payload[2:].decode()}")
    assert opcode == OP_TEXT and json.loads(payload)["t"] == "hello"
    return ws


def stream(site: Site, source: str = "127.0.0.1") -> SseClient:
    return SseClient(f"{site.url}/sse/quotes/?symbols=*", source=source)


def streams_quotes(ws: RawWs) -> bool:
    ws.send_text('{"op":"sub","symbols":"*"}')
    while True:
        opcode, payload = ws.recv_frame()
        if opcode == OP_TEXT and json.loads(payload)["t"] == "q":
            return True


def clients(site: Site) -> int:
    return get_json(site.url + "/internal/status")[1]["clients"]


def test_websockets_and_event_streams_share_one_budget_per_address(site):
    held = [websocket(site), websocket(site)]
    one = stream(site)
    assert one.status == 200
    with pytest.raises(ConnectionError, match="403"):  # a third of one kind: the address's share is spent
        websocket(site)
    refused = stream(site)
    assert refused.status == 429
    refused.close()
    one.close()  # a place freed, for either kind
    wait_until(lambda: clients(site) == 2, 5, 0.05, "the stream to leave")
    held.append(websocket(site))
    for ws in held:
        ws.close()
    wait_until(lambda: clients(site) == 0, 5, 0.05, "every client to leave")


def test_a_full_server_says_so_and_serves_the_clients_it_has(site):
    first = [websocket(site), websocket(site, "127.0.0.2")]
    streams = [stream(site), stream(site, "127.0.0.2"), stream(site)]
    assert all(s.status == 200 for s in streams)
    with pytest.raises(ConnectionError, match=f"{p.WS_4013_TOO_SLOW}"):  # "server full" (daphne drops reasons)
        websocket(site, "127.0.0.3")
    full = stream(site, "127.0.0.3")
    assert full.status == 503 and int(full.headers["retry-after"]) > 0
    full.close()
    assert get_json(site.url + "/healthz")[0] == 200  # ordinary requests are not counted
    assert all(streams_quotes(ws) for ws in first)
    for each in streams:
        each.until(lambda e: e.kind == "q")
    streams.pop().close()  # one leaves: one more may come
    wait_until(lambda: clients(site) == PER_PROCESS - 1, 5, 0.05, "the stream to leave")
    first.append(websocket(site, "127.0.0.3"))
    for ws in first:
        ws.close()
    for each in streams:
        each.close()
    wait_until(lambda: clients(site) == 0, 5, 0.05, "every client to leave")
