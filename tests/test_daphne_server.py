"""daphne as ``dashboard.daphne_server`` runs it: keepalive pings go out spread over time, not in
one burst; connections past the handshake limit wait in the kernel's queue (``dashboard.admission``);
the fast path still recognises daphne's server behind both. Watched from outside: raw clients that
connect together, send nothing after the handshake, and note when each ping lands; sockets that
connect and send nothing, holding the handshake places."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from dashboard.admission import SETTLE_SECONDS, Admission
from dashboard.daphne_server import SLICES, handshake_limit, steps
from tests.helpers.clients import get_json
from tests.helpers.figures import figure
from tests.helpers.rawws import RawWs
from tests.helpers.sites import Site, embedded_as

OP_PING = 0x9
CLIENTS = 200
PING_SECONDS = 2
HANDSHAKES = 4  # the module's server admits this many connections in their handshake at once


def test_admission_fills_with_arrivals_and_empties_as_they_settle_or_age():
    admission: Admission[str] = Admission(limit=3, settle_seconds=1.0)
    assert not admission.arrive("a", 0.0) and not admission.arrive("b", 0.1)
    assert admission.arrive("c", 0.2)  # full: stop accepting
    assert admission.room() == 0 and admission.paused == 1
    assert not admission.sweep(0.5, lambda key: False)  # nothing settled: still full
    assert admission.sweep(0.5, lambda key: key == "b")  # b's handshake is over
    assert set(admission.arriving) == {"a", "c"}
    assert admission.sweep(1.05, lambda key: False) and set(admission.arriving) == {"c"}  # a is a second old
    assert admission.admitted == 3
    with pytest.raises(ValueError):
        Admission(limit=0)


def test_the_handshake_limit_is_a_count_or_the_server_will_not_start(monkeypatch):
    monkeypatch.delenv("TICKER_HANDSHAKES", raising=False)
    assert handshake_limit() == 32
    monkeypatch.setenv("TICKER_HANDSHAKES", "8")
    assert handshake_limit() == 8
    for bad in ("0", "-3", "many", "1.5"):
        monkeypatch.setenv("TICKER_HANDSHAKES", bad)
        with pytest.raises(SystemExit, match="TICKER_HANDSHAKES must be a whole number"):
            handshake_limit()


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
    with embedded_as("daphne", seeded_database, tmp, TICKER_PING_SECONDS=str(PING_SECONDS),
                     TICKER_HANDSHAKES=str(HANDSHAKES)) as site:
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


@pytest.mark.integration
def test_past_the_handshake_limit_a_client_waits_in_the_queue_until_a_place_settles(site):
    """HANDSHAKES sockets connect and send nothing: each holds a handshake place until it is
    SETTLE_SECONDS old. A WebSocket client that comes next is not accepted before one of them
    ages out, then is served as usual: a wait in the kernel's queue, not a refusal or a reset."""
    port = site.procs["web"].port
    assert port is not None
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(HANDSHAKES)]
    try:
        started = time.monotonic()
        ws = RawWs("127.0.0.1", port)  # the handshake (RawWs's timeout is 10 s)
        waited = time.monotonic() - started
        hello = ws.recv_frame()[1]
        ws.close()
    finally:
        for sock in idle:
            sock.close()
    assert b'"hello"' in hello
    assert waited >= SETTLE_SECONDS / 2, f"accepted after {waited:.3f} s: the idle sockets held no place"
    figure("admission: a client behind idle handshakes is served after", waited, target=SETTLE_SECONDS + 0.2,
           limit=10.0)


@pytest.mark.integration
def test_closed_connections_give_their_handshake_places_back(site):
    """Sockets that connect and go away free their places at once: ten times the limit, one after
    another, then a client. Were their places held until they aged, it would wait ten settle
    periods behind them."""
    port = site.procs["web"].port
    assert port is not None
    for _ in range(10 * HANDSHAKES):
        socket.create_connection(("127.0.0.1", port)).close()
    started = time.monotonic()
    ws = RawWs("127.0.0.1", port)
    waited = time.monotonic() - started
    assert b'"hello"' in ws.recv_frame()[1]
    ws.close()
    assert waited < 5 * SETTLE_SECONDS, f"served after {waited:.1f} s: the closed sockets held their places"
