"""A connect storm against one real server: 2,500 clients arrive at once while a steady client
watches the board. None is refused, every newcomer is live (its snap in hand) within a bound,
and the steady client's batches keep coming. The figures are the time to the last newcomer's
snap and the steady client's longest wait between two batches (docs/RELIABILITY.md, "storms").

Newcomers are raw asyncio connections (a handshake, a frame reader, no library): a client cheap
enough that the server is the busy side. Under daphne the newcomers are admitted a few dozen
handshakes at a time (``dashboard.admission``): the rest wait in the kernel's accept queue, so the
batches keep going out between handshakes, and autobahn's 5 s opening-handshake timeout (which
starts at the accept) cut off none of them (docs/RELIABILITY.md, "A connect storm")."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.figures import figure
from tests.helpers.rawws import RawWs
from tests.helpers.sites import Site, embedded_as

pytestmark = pytest.mark.integration

NEWCOMERS = 2500
DEADLINE = 90.0  # seconds for the whole storm: a generous bound, not the figure


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def served(request, tmp_path_factory, seeded_database) -> Iterator[tuple[str, Site]]:
    tmp = tmp_path_factory.mktemp(request.param)
    # every client comes from 127.0.0.1: the per-address budget would refuse most of them
    with embedded_as(request.param, seeded_database, tmp, TICKER_LIMIT_EXEMPT="127.0.0.0/8") as site:
        yield request.param, site


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first & 0x0F, await reader.readexactly(size)


def masked_text(text: str) -> bytes:
    payload, mask = text.encode(), os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def newcomer(port: int, started: float) -> float:
    """Connect, handshake, take the hello, ask for one symbol: seconds from the storm's start to its snap."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET /ws/quotes/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        opcode, payload = await read_frame(reader)
        assert json.loads(payload)["t"] == "hello"
        writer.write(masked_text('{"op":"sub","symbols":["AAPL"]}'))
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 0x1 and json.loads(payload)["t"] == "snap":
                return time.monotonic() - started
    finally:
        writer.close()


class Steady(threading.Thread):
    """A whole-board client on its own thread (the storm keeps the test's loop busy): the
    moment each batch lands."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.ws = RawWs("127.0.0.1", port)
        self.ws.recv_frame()  # hello
        self.ws.send_text('{"op":"sub","symbols":"*"}')
        self.landed: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            opcode, payload = self.ws.recv_frame()
            if opcode == 0x1 and json.loads(payload)["t"] in ("q", "snap"):
                self.landed.append(time.monotonic())

    def longest_gap(self, start: float, end: float) -> float:
        inside = [t for t in self.landed if start <= t <= end]
        return max(b - a for a, b in zip([start, *inside], [*inside, end], strict=True))

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.ws.close()


async def test_2500_clients_arriving_at_once_are_all_served_and_the_board_keeps_moving(served):
    server, site = served
    port = site.procs["web"].port
    assert port is not None
    steady = Steady(port)
    steady.start()
    await asyncio.sleep(2)  # the steady client's batches before the storm
    started = time.monotonic()
    calm = steady.longest_gap(started - 1.5, started)
    results = await asyncio.wait_for(
        asyncio.gather(*(newcomer(port, started) for _ in range(NEWCOMERS)), return_exceptions=True), DEADLINE)
    storm = steady.longest_gap(started, time.monotonic())
    steady.stop()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of {NEWCOMERS} newcomers failed: {failed[:3]}"
    live = sorted(r for r in results if isinstance(r, float))
    print(f"\n{server}: {NEWCOMERS} at once: snap p50 {live[len(live) // 2]:.2f} s, last {live[-1]:.2f} s; "
          f"steady client's longest gap {storm:.3f} s (before the storm {calm:.3f} s)")
    figure(f"storm ({server}): the last of {NEWCOMERS} newcomers live", live[-1], target=3.0, limit=DEADLINE)
    figure(f"storm ({server}): the steady client's longest wait for a batch", storm, target=0.25, limit=30.0)
