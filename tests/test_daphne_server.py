"""Keepalive pings under daphne go out spread over time, not in one burst (dashboard.daphne_server.py),
and the fast path still recognises daphne's server behind them. Watched from outside: raw
clients that connect together, send nothing after the handshake, and note when each ping lands."""

from __future__ import annotations

import selectors
import time
from collections.abc import Iterator

import pytest

from dashboard.daphne_server import SLICES, steps
from tests.helpers.clients import get_json
from tests.helpers.figures import figure
from tests.helpers.rawws import RawWs
from tests.helpers.sites import Site, embedded_as

OP_PING = 0x9
CLIENTS = 200
PING_SECONDS = 2


def test_a_cycle_visits_every_connection_once_and_neighbours_in_different_steps():
    connections = list(range(1000))
    visited = [c for step in range(SLICES) for c in steps(connections, step)]
    assert sorted(visited) == connections
    assert all(len(steps(connections, step)) == 1000 // SLICES for step in range(SLICES))
    assert len(steps(connections[:SLICES], 0)) == 1  # twenty neighbours: one per step


@pytest.fixture(scope="module")
def site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    """daphne with the fast path on (the checker is the same for ASGI sends)."""
    tmp = tmp_path_factory.mktemp("daphne")
    with embedded_as("daphne", seeded_database, tmp, TICKER_PING_SECONDS=str(PING_SECONDS)) as site:
        yield site


def first_pings(site: Site) -> list[float]:
    """Connect CLIENTS raw clients one after another, then the time each one's first ping lands."""
    port = site.procs["web"].port
    assert port is not None
    clients = [RawWs("127.0.0.1", port) for _ in range(CLIENTS)]
    landed: dict[RawWs, float] = {}
    with selectors.DefaultSelector() as selector:
        for ws in clients:
            selector.register(ws.sock, selectors.EVENT_READ, ws)
        deadline = time.monotonic() + 4 * PING_SECONDS + 10
        while len(landed) < CLIENTS and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                ws = key.data
                opcode, _ = ws.recv_frame()  # the hello, then pings; nothing else is sent
                if opcode == OP_PING and ws not in landed:
                    landed[ws] = time.monotonic()
    for ws in clients:
        ws.close()
    assert len(landed) == CLIENTS, f"{CLIENTS - len(landed)} clients never pinged"
    return sorted(landed.values())


@pytest.mark.integration
def test_clients_that_connect_together_are_pinged_spread_over_the_cycle(site):
    landed = first_pings(site)
    # the largest share of first pings inside any 200 ms: daphne's own checker sends them all from
    # one or two callbacks (at least half in one); spread over 20 steps it is about a tenth
    window = 0.2
    crowd = max(sum(1 for t in landed[i:] if t - start < window) for i, start in enumerate(landed))
    share = crowd / CLIENTS
    figure("keepalive: the largest share of first pings in any 200 ms", 100 * share, target=15, limit=40, unit="%")
    assert landed[-1] - landed[0] > 0.5, "every ping went out at once"


@pytest.mark.integration
def test_the_fast_path_still_knows_daphne_behind_the_spread_checker(site):
    port = site.procs["web"].port
    assert port is not None
    ws = RawWs("127.0.0.1", port)
    ws.recv_frame()  # hello
    direct = get_json(site.url + "/internal/status")[1]["direct"]
    ws.close()
    assert direct == 1  # the connection is on the fast path: its server was recognised as daphne's
