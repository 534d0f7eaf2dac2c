"""Per-address caps on long-lived connections (WebSockets and event streams), where the request
is read: how many one address may hold open, and how fast it may open new ones. Past either,
the handshake is refused (HTTP 403; an event stream gets 429) and nothing is kept for it.

The address is the ASGI scope's ``client``: the peer, or with ``--proxy-headers`` behind
nginx the X-Forwarded-For that nginx overwrote. nginx has the same caps (``limit_conn``,
``limit_req``) in front; these hold for the embedded server and any proxy that forgets.
Addresses in ``exempt`` (networks) are not counted: the tests' many loopback clients.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from typing import Any

from asgiref.typing import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

from .metrics import HANDSHAKES_REFUSED

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PRUNE_AT = 10_000  # idle rate buckets are forgotten once this many addresses are tracked


def from_settings(app: Any, prefix: str = "/") -> AddressLimits:
    """The caps the settings ask for, on ``app`` (each wrapped app counts its own connections)."""
    from django.conf import settings

    return AddressLimits(app, settings.TICKER_WS_PER_ADDRESS, settings.TICKER_WS_RATE_PER_ADDRESS,
                         settings.TICKER_WS_BURST_PER_ADDRESS, settings.TICKER_LIMIT_EXEMPT, prefix)


class AddressLimits:
    """ASGI middleware: at most ``max_open`` WebSockets per address, and new ones at ``rate`` a
    second with bursts of ``burst`` (0 turns a cap off)."""

    def __init__(
        self, app: ASGI3Application, max_open: int, rate: float, burst: int, exempt: Iterable[str] = (),
        prefix: str = "/",
    ) -> None:
        self.app = app
        self.prefix = prefix  # only requests for paths under it are counted
        self.max_open = max_open
        self.rate = rate
        self.burst = burst
        self.exempt: list[Network] = [ipaddress.ip_network(net.strip(), strict=False) for net in exempt if net.strip()]
        self.open: dict[str, int] = {}
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, stamp)

    def counted(self, address: str | None) -> bool:
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
        client: Any = scope.get("client")
        address = client[0] if client else None
        counted = scope["type"] in ("websocket", "http") and scope["path"].startswith(self.prefix)
        if not counted or not self.counted(address):
            await self.app(scope, receive, send)
            return
        assert address is not None
        if not self.admit(address, time.monotonic()):
            HANDSHAKES_REFUSED.inc()
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": None})  # before accept: HTTP 403
            else:
                await send({"type": "http.response.start", "status": 429, "headers": [], "trailers": False})
                await send({"type": "http.response.body", "body": b"too many connections", "more_body": False})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.release(address)
