"""The event stream ``/sse/quotes/?symbols=AAPL,MSFT``: the WebSocket's frames as Server-Sent
Events, for networks that block the WebSocket upgrade.

Each frame is one event: ``event: <t>``, ``id: <epoch>:<seq>`` on the frames that carry the
state (``hello``, ``snap``, ``q``), ``data: <the same JSON>``. A browser that reconnects sends
``Last-Event-ID`` (or a page opening a new stream, ``?last=<epoch>:<seq>``), and the stream
resumes exactly as ``resume`` does on a WebSocket. A comment
every ``TICKER_SSE_KEEPALIVE`` seconds (15) keeps proxies from calling it idle.

An event stream is a client of the same hub as a WebSocket, with the same conflation and hold:
a response that cannot drain is held, then caught up; held too long, it is ended and its
connection closed (``sockets.closer``), so the per-address caps count what is really open. When
the server is going away (``Hub.restart``), it ends with a ``retry:`` field and is closed the
same way: reconnect (resuming from the last id) after a delay drawn below ``RESTART_JITTER_MS``.

Only ``GET`` and ``HEAD`` are answered (405 otherwise), and a request that announces a body
(``Content-Length`` other than 0, or ``Transfer-Encoding``) is refused with 413 before any of it
is read: the consumer never calls ``receive`` for it (Channels' ``AsyncHttpConsumer`` would
gather the whole body before the stream starts). The response carries the site's security
headers (``security.guarded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any
from urllib.parse import parse_qs

from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.http import HttpResponse

from .. import protocol as p
from ..fanout.delivery import KEEP_ALIVE, Client
from ..fanout.hub import Hub, TooManyKeys
from ..fanout.types import Drop
from . import metrics, security, sockets
from .limits import respond
from .services import of_scope

METHODS = ("GET", "HEAD")
LINGER_SECONDS = 2.0  # a dropped stream's client gets this long to read the end before a reset


def parse_mark(value: str) -> tuple[str, int] | None:
    """``Last-Event-ID`` as ``(epoch, seq)``; None when it is not one of ours."""
    epoch, _, seq = value.rpartition(":")
    return (epoch, int(seq)) if epoch and seq.isdigit() else None


def refusal(scope: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
    """The answer to a request an event stream does not take (status, text, headers): a method
    other than ``GET``/``HEAD`` (405), or a body announced (413); None for a stream request."""
    if scope["method"] not in METHODS:
        return 405, b"an event stream answers GET and HEAD only", [(b"allow", ", ".join(METHODS).encode())]
    headers = dict(scope["headers"])
    if headers.get(b"content-length", b"0").strip() != b"0" or b"transfer-encoding" in headers:
        return 413, b"an event stream takes no request body", []
    return None


class QuoteStream(AsyncHttpConsumer):
    """One event stream. ``handle`` runs for the life of the response."""

    hub: Hub
    client: Client | None = None
    dropped: asyncio.Event
    why: Drop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        refused = refusal(scope)
        if refused is not None:  # answered before anything of the request's body is received
            metrics.REFUSED.labels(f"http_{refused[0]}").inc()
            await respond(send, *refused)
            return
        self.base_receive = receive
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.leave()

    async def handle(self, body: bytes) -> None:
        guard = security.guarded(self.scope)
        if guard.status_code != 200:  # the site's middleware answers instead (the https redirect)
            await self.send_response(guard.status_code, guard.content, headers=self.headers_of(guard))
            return
        if self.scope["method"] == "HEAD":
            await self.send_response(200, b"", headers=self.stream_headers(guard))
            return
        self.hub = of_scope(self.scope).hub
        query = parse_qs(self.scope["query_string"].decode(errors="replace"))
        try:
            symbols = p.parse_symbols_param(",".join(query.get("symbols", [])))
        except p.ProtocolError as exc:
            metrics.REFUSED.labels(exc.code).inc()
            await self.send_response(400, p.encode_err(exc.code, str(exc)).encode(),
                                     headers=[(b"Content-Type", b"application/json")])
            return
        headers = dict(self.scope["headers"])
        # A browser's own reconnect sends Last-Event-ID; a page opening a new stream (its
        # subscription changed) cannot set headers on an EventSource, so ?last= says the same.
        last = headers.get(b"last-event-id", b"").decode(errors="replace") or ",".join(query.get("last", []))
        mark = parse_mark(last)
        await self.send_headers(status=200, headers=self.stream_headers(guard))
        self.dropped = asyncio.Event()
        client = self.client = self.hub.connect(self.base_send, self.drop, stream=True)
        try:
            if mark is None:
                unknown = self.hub.subscribe(client, symbols)
            else:
                unknown = self.hub.resume(client, mark[0], mark[1], symbols)
        except TooManyKeys as exc:
            unknown = []
            self.hub.reply(client, p.encode_err(p.ERR_TOO_MANY_SYMBOLS, str(exc)), "err")
        if unknown:
            error = p.unknown_symbols(unknown)
            self.hub.reply(client, p.encode_err(error.code, str(error)), "err")
        keep_alive = asyncio.create_task(self.keep_alive(client))
        gone = asyncio.create_task(self.disconnected())
        dropped = asyncio.create_task(self.dropped.wait())
        try:
            await asyncio.wait({gone, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (keep_alive, gone, dropped):
                task.cancel()
            await asyncio.gather(keep_alive, gone, dropped, return_exceptions=True)
        if self.dropped.is_set():  # held too long, or a restart: end the response if it can still be ended, and close
            self.client = None  # the hub has let it go
            restart = self.why is Drop.RESTART
            metrics.CLOSES.labels(str(p.WS_1012_SERVICE_RESTART if restart else p.WS_4013_TOO_SLOW)).inc()
            last = f": restart\nretry: {random.randrange(p.RESTART_JITTER_MS)}\n\n".encode() if restart else b""
            shut = sockets.closer(self.base_send)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.send_body(last, more_body=False), 1.0)
            if shut is not None:
                shut(LINGER_SECONDS)

    def drop(self, why: Drop) -> None:
        """The hub let this stream go (``why``); ``handle`` ends the response."""
        self.why = why
        self.dropped.set()

    @staticmethod
    def headers_of(response: HttpResponse) -> list[tuple[bytes, bytes]]:
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]

    def stream_headers(self, guard: HttpResponse) -> list[tuple[bytes, bytes]]:
        """An event stream's headers, after the security headers of ``guard`` (``security.guarded``)."""
        own = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"),
               (b"x-accel-buffering", b"no")]  # nginx: pass each event on at once
        names = {name for name, _ in own}
        return [*own, *((name, value) for name, value in self.headers_of(guard) if name.lower() not in names)]

    async def disconnected(self) -> None:
        """Until the client goes away (what else it sends on an event stream is ignored)."""
        while (await self.base_receive())["type"] != "http.disconnect":
            pass

    async def keep_alive(self, client: Client) -> None:
        while True:
            await asyncio.sleep(settings.TICKER_SSE_KEEPALIVE)
            client.deliver(KEEP_ALIVE)

    def leave(self) -> None:
        if self.client is not None:
            self.hub.leave(self.client)
            self.client = None
