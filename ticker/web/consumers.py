"""The WebSocket endpoint ``/ws/quotes/``: an async adapter between a socket and the hub.

The consumer decodes each client frame with ``ticker.protocol`` and asks the process's hub
(``scope["ticker"].hub``) to (un)subscribe, resume or record an ack. Every frame to the
client, quotes and replies alike, leaves through the hub's one outgoing path for the
connection (``Client.deliver``). The consumer has no channel-layer channel of its own
(``channel_layer_alias = None``) and skips Channels' per-event database cleanup hop: it never
touches the ORM.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from .. import protocol as p
from ..fanout.delivery import Client
from ..fanout.hub import Hub, TooManyKeys

log = logging.getLogger(__name__)


class QuoteConsumer(AsyncWebsocketConsumer):
    """One browser (or script) subscribed to quotes."""

    channel_layer_alias = None  # the hub listens to the layer for the whole process

    hub: Hub
    client: Client | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels ≥ 4.2 closes old DB connections in a thread before every handler; we never
        # use the database here, so go straight to the handler.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    async def connect(self) -> None:
        self.hub = self.scope["ticker"].hub
        self.bucket = p.TokenBucket(now=time.monotonic())
        await self.accept()
        self.client = self.hub.connect(self.base_send)

    async def disconnect(self, code: int) -> None:
        if self.client is not None:
            self.hub.leave(self.client)
            self.client = None

    def reply(self, text: str) -> None:
        assert self.client is not None
        self.hub.reply(self.client, text)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.client is None:
            return
        if not self.bucket.take(time.monotonic()):
            if self.bucket.flooding:
                await self.close(code=p.WS_1008_POLICY_VIOLATION, reason="flood")
            elif self.bucket.refused == 1:
                self.reply(p.encode_err(p.ERR_RATE_LIMITED, f"more than {p.RATE_PER_SECOND:g} frames/s"))
            return
        if text_data is None:
            self.reply(p.encode_err(p.ERR_BAD_REQUEST, "binary frames are not part of the protocol"))
            return
        try:
            self.handle(p.parse_client_message(text_data))
        except p.ProtocolError as exc:
            if exc.close_code:
                await self.close(code=exc.close_code, reason=str(exc))
            else:
                self.reply(p.encode_err(exc.code, str(exc)))

    def handle(self, msg: p.ClientMessage) -> None:
        client = self.client
        assert client is not None
        if isinstance(msg, p.Ping):
            self.reply(p.encode_pong(msg.id))
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
