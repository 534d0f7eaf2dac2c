"""nginx in front of a real daphne, configured from deploy/nginx/nginx.conf.in: https and wss
with a certificate made for the test, X-Forwarded-Proto for Django, and the per-address caps
(limit_conn on /ws/, limit_req on the app) refusing past their limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import websockets

from deploy import cluster
from tests.helpers.procs import ROOT, Proc, start_daphne, start_nginx
from tests.helpers.sites import prepared_env
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.integration

WS_PER_IP = 3
REQ_PER_SECOND, REQ_BURST = 2, 4


@dataclass
class Front:
    web: Proc
    open: Proc  # https, no limits
    capped: Proc  # plain http, tight limits
    trust: ssl.SSLContext


@pytest.fixture(scope="module")
def front(tmp_path_factory, seeded_database) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp("nginx")
    logs, static = tmp / "logs", tmp / "static"
    env = prepared_env(seeded_database, tmp, TICKER_FEED_RATE="50", DJANGO_STATIC_ROOT=str(static),
                       DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    cluster.collectstatic(env)
    procs: list[Proc] = []
    try:
        procs.append(web := start_daphne(logs, env))
        upstream = [f"127.0.0.1:{web.port}"]
        procs.append(tls := start_nginx(logs, upstream, static, tls_dir=tmp / "tls", name="nginx-tls"))
        procs.append(capped := start_nginx(
            logs, upstream, static, limits=cluster.Limits(WS_PER_IP, REQ_PER_SECOND, REQ_BURST), name="nginx-capped",
        ))
        trust = ssl.create_default_context(cafile=str(tls.extra["cert"]))
        yield Front(web, tls, capped, trust)
    finally:
        for proc in reversed(procs):
            proc.stop()


def get(url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_the_page_over_https(front):
    base = f"https://127.0.0.1:{front.open.extra['https_port']}"
    status, headers, page = get(base + "/", front.trust)
    assert status == 200 and b'data-symbol="AAPL"' in page
    # Django saw https (nginx's X-Forwarded-Proto, SECURE_PROXY_SSL_HEADER): the page may open wss.
    assert f"wss://127.0.0.1:{front.open.extra['https_port']}" in headers["Content-Security-Policy"]
    status, _, body = get(base + "/static/ticker/board.js", front.trust)
    assert status == 200 and body == (ROOT / "ticker/static/ticker/board.js").read_bytes()


def test_an_untrusted_client_refuses_the_self_signed_certificate(front):
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://127.0.0.1:{front.open.extra['https_port']}/healthz", timeout=10,
                               context=ssl.create_default_context())


def test_plain_http_is_not_taken_for_https_whatever_the_client_says(front):
    """nginx overwrites X-Forwarded-Proto: a client cannot claim https over plain http."""
    status, headers, _ = get(f"http://127.0.0.1:{front.open.port}/", headers={"X-Forwarded-Proto": "https"})
    assert status == 200
    assert f"ws://127.0.0.1:{front.open.port}" in headers["Content-Security-Policy"]
    assert "wss://" not in headers["Content-Security-Policy"]


async def test_hello_over_wss(front):
    url = f"wss://127.0.0.1:{front.open.extra['https_port']}/ws/quotes/?v=1"
    async with websockets.connect(url, ssl=front.trust, open_timeout=10) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["t"] == "hello" and hello["symbols"]
        await ws.send(json.dumps({"op": "sub", "symbols": ["AAPL"]}))
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["t"] != "snap":
            pass
        assert [row[0] for row in frame["q"]] == ["AAPL"]


async def test_websockets_past_the_per_address_cap_are_refused(front):
    url = f"ws://127.0.0.1:{front.capped.port}/ws/quotes/?v=1"
    held = [await websockets.connect(url, open_timeout=10) for _ in range(WS_PER_IP)]
    try:
        for ws in held:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["t"] == "hello"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, open_timeout=10)
        assert refused.value.response.status_code == 429
        # One closes: its place is free again (nginx counts it off once the proxied request ends).
        await held.pop().close()

        async def another() -> bool:
            try:
                held.append(await websockets.connect(url, open_timeout=10))
            except websockets.InvalidStatus:
                await asyncio.sleep(0.05)
                return False
            return True

        deadline = asyncio.get_running_loop().time() + 10
        while not await another():
            assert asyncio.get_running_loop().time() < deadline, "the freed place never came back"
    finally:
        for ws in held:
            await ws.close()
    assert "limiting connections" in front.capped.extra["error_log"].read_text()


def test_requests_past_the_per_address_rate_are_refused(front):
    base = f"http://127.0.0.1:{front.capped.port}"
    statuses = [get(base + "/api/quotes/?symbols=AAPL")[0] for _ in range(40)]
    assert set(statuses) == {200, 429}  # 40 requests at 2 a second would take 20 s
    assert statuses[: REQ_BURST + 1] == [200] * (REQ_BURST + 1)  # the burst is served at once
    # Static files are nginx's own and not rate-limited; the limit lifts as time passes.
    assert {get(base + "/static/ticker/board.css")[0] for _ in range(20)} == {200}
    wait_until(lambda: get(base + "/api/quotes/?symbols=AAPL")[0] == 200, 10, 0.2, "the rate limit to lift")


def test_a_handshake_dribbled_a_header_line_at_a_time_is_cut_off(front):
    """Slowloris: nginx closes the connection once the request's headers take over 10 s
    (client_header_timeout), however steadily they trickle in; the app never sees the request."""
    port = front.capped.port
    started = time.monotonic()
    closed_at = None
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /ws/quotes/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(0.5)
        try:
            for i in range(40):  # a line every 0.5 s: 20 s if nobody cut it off
                sock.sendall(b"X-Slow-%d: 1\r\n" % i)
                with contextlib.suppress(TimeoutError):
                    if sock.recv(4096) == b"":
                        closed_at = time.monotonic()
                        break
        except OSError:  # reset while sending: closed too
            closed_at = time.monotonic()
    assert closed_at is not None, "nginx kept the dribbling connection open for 20 s"
    assert closed_at - started < 15, f"cut off after {closed_at - started:.1f} s"
    assert "X-Slow" not in front.web.output()
