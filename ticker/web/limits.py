"""Caps on long-lived connections (WebSockets and event streams together), where the request is
read: how many one address may hold open, how fast it may open new ones, and how many the
process holds in all.

- Per address (``max_open``, ``rate``/``burst``): one budget for a WebSocket and an event
  stream alike. Past it the handshake is refused (WebSocket: HTTP 403; event stream: 429) and
  nothing is kept for it.
- Per process (``max_total``): every long-lived connection counts, exempt addresses too.
  Past it the server is full: a WebSocket is accepted and closed at once with **4013**, try
  again later (daphne's applications cannot send 1013; the reason ``server full`` is dropped by
  daphne), an event stream gets 503 with ``Retry-After``. The connections already open are
  served as before, and ordinary requests (the page, ``/healthz``, ``/internal/status``) are
  not counted.

The address is the ASGI scope's ``client``: the peer, or with ``--proxy-headers`` behind
nginx the X-Forwarded-For that nginx overwrote. nginx has the same per-address caps
(``limit_conn``, ``limit_req``) in front; these hold for the embedded server and any proxy that
forgets. Addresses in ``exempt`` (networks) are not counted per address: the tests' many
loopback clients.
"""

from __future__ import annotations

import ipaddress
import resource
import time
from collections.abc import Iterable
from typing import Any

from asgiref.typing import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

from ..protocol import WS_4013_TOO_SLOW
from .metrics import HANDSHAKES_REFUSED

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PRUNE_AT = 10_000  # idle rate buckets are forgotten once this many addresses are tracked
STREAMS = "/sse/"  # HTTP paths under it are long-lived (event streams)
DESCRIPTOR_RESERVE = 64  # descriptors kept for the database, Redis, logs and listening sockets
RETRY_AFTER_SECONDS = 10  # what a full server tells an event stream to wait


def descriptor_budget() -> int:
    """Connections this process can hold: its open-files limit less ``DESCRIPTOR_RESERVE``
    (0, no cap, when the limit is unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 0 if soft == resource.RLIM_INFINITY else max(1, soft - DESCRIPTOR_RESERVE)


def from_settings(app: Any) -> AddressLimits:
    """The caps the settings ask for, around the whole ``app`` (WebSockets and event streams share
    them); ``TICKER_MAX_CONNECTIONS`` 0 means the descriptor budget."""
    from django.conf import settings

    return AddressLimits(app, settings.TICKER_WS_PER_ADDRESS, settings.TICKER_WS_RATE_PER_ADDRESS,
                         settings.TICKER_WS_BURST_PER_ADDRESS, settings.TICKER_LIMIT_EXEMPT,
                         max_total=settings.TICKER_MAX_CONNECTIONS or descriptor_budget())


class AddressLimits:
    """ASGI middleware over long-lived connections (WebSockets, HTTP under ``STREAMS``): at most
    ``max_open`` per address, new ones at ``rate`` a second with bursts of ``burst``, and at most
    ``max_total`` in the process (0 turns a cap off)."""

    def __init__(
        self, app: ASGI3Application, max_open: int, rate: float, burst: int, exempt: Iterable[str] = (),
        *, max_total: int = 0,
    ) -> None:
        self.app = app
        self.max_open = max_open
        self.rate = rate
        self.burst = burst
        self.max_total = max_total
        self.exempt: list[Network] = [ipaddress.ip_network(net.strip(), strict=False) for net in exempt if net.strip()]
        self.open: dict[str, int] = {}
        self.total = 0  # long-lived connections open in the process, every address counted
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, stamp)

    def counted(self, address: str | None) -> bool:
        """True when ``address`` is held to the per-address caps."""
        if address is None:
            return False  # a unix socket without proxy headers: nothing to count by
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return True
        return not any(ip in net for net in self.exempt)

    def admit(self, address: str, now: float) -> bool:
        """Count a new connection from ``address``; False when it must be refused."""
        if self.max_open and self.open.get(address, 0) >= self.max_open:
            return False
        if self.rate:
            tokens, stamp = self.buckets.get(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens < 1:
                self.buckets[address] = (tokens, now)
                return False
            self.buckets[address] = (tokens - 1, now)
            if len(self.buckets) > PRUNE_AT:
                self.prune(now)
        self.open[address] = self.open.get(address, 0) + 1
        return True

    def prune(self, now: float) -> None:
        """Forget the buckets that have refilled: they hold nothing an address could use."""
        full = [a for a, (tokens, stamp) in self.buckets.items() if tokens + (now - stamp) * self.rate >= self.burst]
        for address in full:
            del self.buckets[address]

    def release(self, address: str) -> None:
        left = self.open[address] - 1
        if left:
            self.open[address] = left
        else:
            del self.open[address]

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if not (scope["type"] == "websocket" or (scope["type"] == "http" and scope["path"].startswith(STREAMS))):
            await self.app(scope, receive, send)
            return
        if self.max_total and self.total >= self.max_total:
            HANDSHAKES_REFUSED.labels("full").inc()
            await full(scope, receive, send)
            return
        client: Any = scope.get("client")
        address = client[0] if client else None
        counted = self.counted(address)
        if counted:
            assert address is not None
            if not self.admit(address, time.monotonic()):
                HANDSHAKES_REFUSED.labels("address").inc()
                await refuse(scope, send)
                return
        self.total += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.total -= 1
            if counted:
                assert address is not None
                self.release(address)


async def refuse(scope: Scope, send: ASGISendCallable) -> None:
    """Past an address's caps: a WebSocket handshake refused (HTTP 403), an event stream 429."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": None})
    else:
        await respond(send, 429, b"too many connections from this address")


async def full(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Past the process's cap: a WebSocket accepted and closed with 4013 ``server full``, an event
    stream 503 with ``Retry-After``."""
    if scope["type"] == "websocket":
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
            await send({"type": "websocket.close", "code": WS_4013_TOO_SLOW, "reason": "server full"})
    else:
        await respond(send, 503, b"server full, try again later", [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])


async def respond(
    send: ASGISendCallable, status: int, text: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A whole plain-text answer that ends the connection (nothing of a request body is read)."""
    await send({"type": "http.response.start", "status": status, "trailers": False, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": text, "more_body": False})
