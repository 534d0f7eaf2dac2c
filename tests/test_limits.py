"""What one client can make a server hold, tried from outside against real daphne (fast path
and ASGI sends) and real uvicorn: every limit closes with a code that server can send, and the
server's client count and memory come back where they were."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.clients import Ws, get_json
from tests.helpers.rawws import OP_CONT, OP_TEXT, RawWs
from tests.helpers.sites import SERVERS, Site, embedded, embedded_as
from tests.helpers.waiting import wait_until
from ticker import protocol as p
from ticker.web.limits import AddressLimits

pytestmark = pytest.mark.integration

HOLD_LIMIT = 3.0  # seconds, for these servers (30 by default)


@pytest.fixture(scope="module", params=list(SERVERS))
def site(request, tmp_path_factory, seeded_database) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp(request.param)
    with embedded_as(request.param, seeded_database, tmp, TICKER_HOLD_LIMIT=str(HOLD_LIMIT),
                     TICKER_SOCKET_SNDBUF="16384") as site:
        yield site


def address(site: Site) -> tuple[str, int]:
    port = site.procs["web"].port
    assert port is not None
    return "127.0.0.1", port


def clients(site: Site) -> int:
    return get_json(site.url + "/internal/status")[1]["clients"]


def closes(site: Site, code: int) -> float:
    with urllib.request.urlopen(site.url + "/metrics", timeout=10) as resp:
        families = text_string_to_metric_families(resp.read().decode())
    return sum(s.value for f in families for s in f.samples
               if s.name == "ticker_closes_total" and s.labels["code"] == str(code))


def rss_kb(site: Site) -> int:
    status = Path(f"/proc/{site.procs['web'].pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def connected(site: Site, **options: int) -> RawWs:
    ws = RawWs(*address(site), **options)
    opcode, payload = ws.recv_frame()
    assert opcode == OP_TEXT and json.loads(payload)["t"] == "hello"
    return ws


def oversized(site: Site) -> int | None:
    ws = connected(site)
    try:
        with contextlib.suppress(OSError):  # the server may close, and reset, while we still send
            ws.send_text("x" * (p.MAX_FRAME_BYTES + 1))
        return ws.close_code()
    finally:
        ws.close()


def flood(site: Site, frames: int = p.RATE_BURST + p.FLOOD_BUDGET + 10) -> int | None:
    ws = connected(site)
    try:
        with contextlib.suppress(OSError):  # closed after the budget: frames still in flight meet a reset
            for i in range(frames):
                ws.send_text(json.dumps({"op": "ping", "id": i}))
        return ws.close_code()
    finally:
        ws.close()


def test_a_frame_over_the_limit_is_closed_by_the_server_with_1009(site):
    assert oversized(site) == p.WS_1009_MESSAGE_TOO_BIG


def test_an_unfinished_fragmented_message_holds_a_bounded_amount_then_is_closed_with_1009(site):
    """Frames of 4,000 bytes, none final: the server closes once the message passes its limit
    (64 KiB on daphne, whose message limit also bounds what it sends; 4 KiB on uvicorn)."""
    ws = connected(site)
    with contextlib.suppress(OSError):  # the server may close while we still send
        for i in range(40):  # 160 KB offered
            ws.send_frame(OP_TEXT if i == 0 else OP_CONT, b"x" * 4000, fin=False)
    assert ws.close_code() == p.WS_1009_MESSAGE_TOO_BIG
    ws.close()
    wait_until(lambda: clients(site) == 0, 5, 0.05, "the client to leave")


def test_invalid_utf8_is_closed_with_1007_not_a_reset(site):
    ws = connected(site)
    ws.send_text(b'{"op":"ping","id":"\xff\xfe"}')
    assert ws.close_code() == 1007
    ws.close()


def test_a_flood_is_closed_with_4008_however_it_is_paced(site):
    ws = connected(site)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 8:  # 40 frames a second, paced: four times the rate
            ws.send_text('{"op":"ping","id":1}')
            time.sleep(0.025)
    except OSError:
        pass  # closed under our feet: the code is in what we received
    assert ws.close_code() == p.WS_4008_POLICY
    ws.close()


def test_500_oversized_frames_and_100_floods_leave_the_server_as_it_was(site):
    baseline = clients(site)
    # Warm up first: daphne's RSS climbs over its first ~1,000 connections (cycles between
    # Twisted, autobahn and the link wait for the collector's oldest generation), then stays flat.
    for _ in range(800):
        oversized(site)
    for _ in range(160):
        flood(site)
    wait_until(lambda: clients(site) == baseline, 10, 0.1, "the warm-up clients to leave")
    before, logged = rss_kb(site), len(site.procs["web"].output())
    floods_before = closes(site, p.WS_4008_POLICY)
    codes = [oversized(site) for _ in range(500)] + [flood(site) for _ in range(100)]
    assert codes.count(p.WS_1009_MESSAGE_TOO_BIG) == 500 and codes.count(p.WS_4008_POLICY) == 100
    assert closes(site, p.WS_4008_POLICY) - floods_before == 100  # and /metrics counted them
    wait_until(lambda: clients(site) == baseline, 10, 0.1, "every closed client to leave the hub")
    grown = rss_kb(site) - before
    print(f"\n600 hostile connections: RSS {before} kB -> +{grown} kB, clients back to {baseline}")
    assert grown < 4 * 1024, f"RSS grew {grown} kB over 600 closed connections"
    assert "Traceback" not in site.procs["web"].output()[logged:]  # a client's mistake is no server error


async def test_a_client_that_keeps_asking_but_never_reads_is_closed_as_too_slow(site):
    """Every reply (a whole-board snap for each `sub`) goes through the held path: nothing piles up,
    and the connection is closed (4013) once it has been held for HOLD_LIMIT seconds."""
    control = await Ws.open(site.ws_url)
    await control.send({"op": "sub", "symbols": "*"})
    await control.until(lambda f: f["t"] == "snap")
    baseline = await asyncio.to_thread(clients, site)
    before = await asyncio.to_thread(rss_kb, site)
    too_slow_before = await asyncio.to_thread(closes, site, p.WS_4013_TOO_SLOW)
    deaf = [await asyncio.to_thread(connected, site, recv_buffer=4096) for _ in range(10)]
    started = time.monotonic()
    while await asyncio.to_thread(clients, site) > baseline:
        assert time.monotonic() - started < 60, "the deaf clients were never dropped"
        for ws in deaf:
            with contextlib.suppress(OSError):  # dropped meanwhile
                ws.send_text('{"op":"sub","symbols":"*"}')  # 9 a second: inside the rate limit
        await asyncio.sleep(1 / 9)
        frame = await control.recv()  # the control client is served all along
        assert frame["t"] in ("q", "snap")
    grown = await asyncio.to_thread(rss_kb, site) - before
    # The close frame (4013) queues behind what the client never read: a client that reads again
    # within the server's close handshake gets it, one that does not is cut off. /metrics counts
    # the closes either way.
    codes = [await asyncio.to_thread(ws.close_code) for ws in deaf]
    for ws in deaf:
        ws.close()
    print(f"\n10 deaf clients dropped after {time.monotonic() - started:.1f} s; RSS +{grown} kB; {codes}")
    assert set(codes) <= {p.WS_4013_TOO_SLOW, None}
    assert await asyncio.to_thread(closes, site, p.WS_4013_TOO_SLOW) - too_slow_before == 10
    assert grown < 8 * 1024
    await control.close()


@pytest.fixture(scope="module")
def capped_site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    """daphne with small per-address caps (5 open, a burst of 8 new ones, then one a minute), and
    loopback counted like any address."""
    with embedded(seeded_database, tmp_path_factory.mktemp("capped"), TICKER_LIMIT_EXEMPT="",
                  TICKER_WS_PER_ADDRESS="5", TICKER_WS_RATE_PER_ADDRESS="0.0167",
                  TICKER_WS_BURST_PER_ADDRESS="8") as site:
        yield site


def refused(site: Site) -> bool:
    try:
        RawWs(*address(site)).close()
    except ConnectionError as exc:
        assert "403" in str(exc)
        return True
    return False


def test_one_address_holds_at_most_its_share_of_websockets_and_opens_them_at_a_rate(capped_site):
    held = [connected(capped_site) for _ in range(5)]
    assert refused(capped_site)  # a sixth at once: refused, and it cost nothing
    for _ in range(3):  # a place freed is a place taken again, while the burst lasts (8 in all)
        held.pop().close()
        wait_until(lambda: clients(capped_site) == 4, 5, 0.05, "the closed one to leave")
        held.append(connected(capped_site))
    held.pop().close()
    wait_until(lambda: clients(capped_site) == 4, 5, 0.05, "the closed one to leave")
    assert refused(capped_site)  # a free place, but the burst is spent
    for ws in held:
        ws.close()
    wait_until(lambda: clients(capped_site) == 0, 5, 0.05, "every client to leave")


def test_the_rate_buckets_of_idle_addresses_are_forgotten():
    async def app(scope, receive, send):
        pass

    limits = AddressLimits(app, max_open=0, rate=10, burst=5)
    for i in range(100):  # addresses of the documentation range: keys, nothing is sent to them
        assert limits.admit(f"2001:db8::{i:x}", now=0.0)
        limits.release(f"2001:db8::{i:x}")
    assert len(limits.buckets) == 100 and limits.open == {}
    limits.prune(now=1.0)  # a second later every bucket has refilled
    assert limits.buckets == {}
