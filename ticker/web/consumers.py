"""The WebSocket endpoint ``/ws/quotes/``: an async adapter between a socket and the hub.

The consumer decodes each client frame with ``ticker.protocol`` and asks the process's hub
(``services.of_scope(scope).hub``) to (un)subscribe, resume or record an ack. Every frame to the
client, quotes and replies alike, leaves through the hub's one outgoing path for the
connection (``Client.deliver``). The consumer has no channel-layer channel of its own
(``channel_layer_alias = None``) and skips Channels' per-event database cleanup hop: it never
touches the ORM.

Closing cannot leak: the consumer closes only with codes every server can send (4000+, see
``ticker.protocol``), or 1012 when the server is going away (past autobahn under daphne:
``fastpath.send_close``), handles no frame after it decided to close, and leaves the hub
however it ends (``__call__``'s ``finally``), a crash included.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from .. import protocol as p
from ..fanout import fastpath
from ..fanout.delivery import Client
from ..fanout.hub import Hub, TooManyKeys
from ..fanout.types import Drop
from . import metrics
from .services import of_scope

log = logging.getLogger(__name__)


# A message type's handler, named once: a name made per message would be a new string each
# time, and the interpreter's method cache keeps a reference to every name looked up (up to a
# few thousand of them: memory that fills for minutes under connection churn).
HANDLERS = {kind: kind.replace(".", "_") for kind in ("websocket.connect", "websocket.receive", "websocket.disconnect")}


class QuoteConsumer(AsyncWebsocketConsumer):
    """One browser (or script) subscribed to quotes."""

    channel_layer_alias = None  # the hub listens to the layer for the whole process

    hub: Hub
    client: Client | None = None
    closing = False
    address = "-"
    conn_id = "-"
    closer: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.leave()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels ≥ 4.2 closes old DB connections in a thread before every handler; we never
        # use the database here, so go straight to the handler.
        handler = getattr(self, HANDLERS.get(message["type"], ""), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    async def connect(self) -> None:
        self.hub = of_scope(self.scope).hub
        client = self.scope.get("client")
        self.address = client[0] if client else "-"
        self.conn_id = secrets.token_hex(4)  # in every log line about this connection
        self.bucket = p.TokenBucket(now=time.monotonic())
        await self.accept()
        self.client = self.hub.connect(self.base_send, self.drop)

    async def disconnect(self, code: int) -> None:
        self.leave()

    def leave(self) -> None:
        if self.client is not None:
            self.hub.leave(self.client)
            self.client = None

    async def shut(self, code: int, reason: str) -> None:
        """Close once, with a code every server can send; the hub forgets the client at once."""
        if self.closing:
            return
        self.closing = True
        self.leave()
        metrics.CLOSES.labels(str(code)).inc()
        log.info("close code=%d reason=%r conn=%s addr=%s", code, reason, self.conn_id, self.address)
        await self.close(code=code, reason=reason)

    def drop(self, why: Drop) -> None:
        """The hub let this client go: it stopped reading (4013), or the server is going away (1012)."""
        self.closing = True  # the hub has already let it go
        self.client = None
        restart = why is Drop.RESTART
        code, reason = (p.WS_1012_SERVICE_RESTART, "restart") if restart else (p.WS_4013_TOO_SLOW, "too slow")
        metrics.CLOSES.labels(str(code)).inc()
        log.info("close code=%d reason=%r conn=%s addr=%s", code, reason, self.conn_id, self.address)
        if restart and fastpath.send_close(self.base_send, code, reason):
            return  # daphne: the client's answer ends the connection
        self.closer = asyncio.get_running_loop().create_task(self.close(code=code, reason=reason))

    def reply(self, text: str, kind: str = "err") -> None:
        assert self.client is not None
        self.hub.reply(self.client, text, kind)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.client is None or self.closing:
            return  # frames that arrive after the decision to close are not handled
        if not self.bucket.take(time.monotonic()):
            metrics.REFUSED.labels(p.ERR_RATE_LIMITED).inc()
            if self.bucket.flooding:
                await self.shut(p.WS_4008_POLICY, "flood")
            elif self.bucket.first_refusal:
                self.reply(p.encode_err(p.ERR_RATE_LIMITED, f"more than {p.RATE_PER_SECOND:g} frames/s"))
            return
        if text_data is None:
            metrics.REFUSED.labels("binary").inc()
            self.reply(p.encode_err(p.ERR_BAD_REQUEST, "binary frames are not part of the protocol"))
            return
        try:
            self.handle(p.parse_client_message(text_data))
        except p.ProtocolError as exc:
            metrics.REFUSED.labels(exc.code).inc()
            if exc.close_code:
                await self.shut(exc.close_code, str(exc))
            else:
                self.reply(p.encode_err(exc.code, str(exc)))

    def handle(self, msg: p.ClientMessage) -> None:
        client = self.client
        assert client is not None
        if isinstance(msg, p.Ping):
            self.reply(p.encode_pong(msg.id), "pong")
        elif isinstance(msg, p.Ack):
            self.hub.ack(client, msg.seq)
        elif isinstance(msg, p.Unsubscribe):
            self.hub.unsubscribe(client, msg.symbols)
        else:
            try:
                if isinstance(msg, p.Subscribe):
                    unknown = self.hub.subscribe(client, msg.symbols)
                else:
                    unknown = self.hub.resume(client, msg.epoch, msg.seq, msg.symbols)
            except TooManyKeys as exc:
                raise p.ProtocolError(p.ERR_TOO_MANY_SYMBOLS, str(exc)) from None
            if unknown:
                error = p.unknown_symbols(unknown)
                self.reply(p.encode_err(error.code, str(error)))
