"""Daphne's fast path: pre-built WebSocket frames written to each connection's transport.

Under daphne, sending one text frame through the ASGI ``send`` costs about 40 µs of CPU per
connection (DESIGN.md §3): daphne's reply coroutine, UTF-8 encoding and autobahn's framing per
recipient, then Twisted registering and unregistering a writer with the event loop for every
write. The hub sends the *same* frame to many connections, so this module lets it build the
frame once per batch and hand the bytes to each connection's Twisted transport:

- ``DirectLink.write`` calls ``transport.write(frame)``: the public Twisted API, so TLS
  (which wraps the transport) and Twisted's buffering keep working.
- On a plain TCP transport whose buffer is empty, the frame is first offered to the socket
  directly (what Twisted would do one loop turn later, minus the writer registration); any
  part the kernel does not take goes through ``transport.write``, so order is kept. This reads
  Twisted's buffer fields, which are not public API; it is skipped for any other transport.
- Backpressure: each link registers as the transport's streaming producer (Twisted's
  ``IPushProducer``), so Twisted says when a connection's buffer passes its limit (64 KiB)
  and when it has drained. The hub stops sending to a blocked connection and sends it a
  ``snap`` once it drains: per-connection memory stays bounded by Twisted's buffer (and by
  ``TICKER_SOCKET_SNDBUF`` in the kernel, when set; Linux otherwise lets a stalled
  connection's kernel buffer grow to megabytes). The
  producer registered before (Twisted's HTTP channel, which carried the upgrade) is kept
  behind the link and told everything the link is told, so it behaves as before.

``TICKER_DAPHNE_FAST_PATH=0`` turns it off (every send goes through ASGI); under any other
server ``direct_link`` finds nothing and the hub uses ASGI sends.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked RFC 6455 text frame (server to client) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


class DirectLink:
    """One daphne connection seen as a byte pipe, and Twisted's producer for it."""

    __slots__ = ("blocked", "direct", "on_blocked", "on_drained", "open", "previous", "protocol", "transport")

    def __init__(self, protocol: Any) -> None:
        from twisted.internet import tcp

        self.protocol = protocol
        self.open = protocol.STATE_OPEN  # autobahn's state once the handshake is done
        self.transport = protocol.transport
        # The socket shortcut only on a plain TCP connection: under TLS the transport is a
        # TLS protocol whose write encrypts, and the socket must never see clear text.
        self.direct = isinstance(self.transport, tcp.Connection) and hasattr(self.transport, "_tempDataLen")
        if self.direct and settings.TICKER_SOCKET_SNDBUF:
            # Cap the kernel's send buffer too (Linux grows it to megabytes for a stalled reader).
            self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.TICKER_SOCKET_SNDBUF)
        self.blocked = False
        self.on_blocked: Callable[[], None] | None = None
        self.on_drained: Callable[[], None] | None = None
        self.previous = getattr(self.transport, "producer", None)
        if self.previous is not None:
            if not getattr(self.transport, "streamingProducer", False):
                raise RuntimeError("the transport has a pull producer")
            self.transport.unregisterProducer()
        self.transport.registerProducer(self, True)

    def write(self, frame: bytes) -> None:
        """Send one pre-built frame; never blocks, never raises for a closing connection."""
        if self.protocol.state != self.open:
            return  # closing: autobahn has sent (or will send) the close frame
        transport = self.transport
        if self.direct and not transport._tempDataLen and len(transport.dataBuffer) == transport.offset:
            try:
                sent = transport.socket.send(frame)
            except OSError:  # would block, or a dying socket: Twisted's own write deals with it
                sent = 0
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)

    # IPushProducer: Twisted calls these.

    def pauseProducing(self) -> None:
        if self.previous is not None:
            self.previous.pauseProducing()
        if not self.blocked:
            self.blocked = True
            if self.on_blocked:
                self.on_blocked()

    def resumeProducing(self) -> None:
        if self.previous is not None:
            self.previous.resumeProducing()
        if self.blocked:
            self.blocked = False
            if self.on_drained:
                self.on_drained()

    def stopProducing(self) -> None:
        if self.previous is not None:
            self.previous.stopProducing()
        self.blocked = True
        self.on_blocked = self.on_drained = None


def daphne_protocol(send: Callable[..., Any]) -> Any | None:
    """The daphne WebSocket protocol behind an ASGI ``send``, or None under another server.

    Daphne gives each connection ``functools.partial(server.handle_reply, protocol)``.
    """
    if not isinstance(send, functools.partial) or not send.args:
        return None
    owner = getattr(send.func, "__self__", None)
    if type(owner).__module__ != "daphne.server":
        return None
    protocol = send.args[0]
    if not hasattr(protocol, "registerProducer") or getattr(protocol, "transport", None) is None:
        return None
    return protocol


def direct_link(send: Callable[..., Any]) -> DirectLink | None:
    """A ``DirectLink`` for this connection when the fast path applies, else None."""
    if not settings.TICKER_DAPHNE_FAST_PATH:
        return None
    protocol = daphne_protocol(send)
    if protocol is None:
        return None
    try:
        return DirectLink(protocol)
    except Exception:  # an unexpected daphne or Twisted: stay on the ASGI path
        log.warning("daphne fast path unavailable; using ASGI sends", exc_info=True)
        return None

