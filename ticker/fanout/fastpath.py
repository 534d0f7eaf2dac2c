"""Daphne's fast path: pre-built WebSocket frames written to each connection's transport.

Under daphne, a text frame sent through the ASGI ``send`` costs about 40 µs of CPU per
connection (DESIGN.md §3): daphne's reply coroutine, autobahn's framing, then Twisted
registering and unregistering a writer for every write. The hub sends the *same* frame to
many connections, so a ``DirectLink`` takes the frame built once per batch and hands the
bytes to each connection's Twisted transport:

- ``write`` calls ``transport.write(frame)``, the public Twisted API, so TLS (which wraps the
  transport) and Twisted's buffering keep working.
- On a plain TCP transport whose buffer is empty, the frame is first offered to the socket
  directly (what Twisted would do one loop turn later, minus the writer registration); what
  the kernel does not take goes through ``transport.write``, so order is kept. Never under
  TLS: there the transport is a TLS protocol and the socket must not see clear text.
- Backpressure: the link registers as the transport's streaming producer (``IPushProducer``),
  so Twisted says when the connection's buffer passes its limit (64 KiB) and when it has
  drained; the producer registered before (daphne's HTTP channel) is kept behind the link and
  told everything the link is told. A link is attached to every daphne connection for this
  alone when the fast path is off (``direct=False``): frames then go through ASGI sends, and
  the connection's buffer is still bounded.
- Protocol errors: autobahn's default (``failByDrop``) answers a frame over the size limit or
  invalid UTF-8 with a TCP reset; the link turns it off, for its connection and the factory's
  next ones, so the client gets the close code (1009, 1007, 1002) instead.

It reads what daphne, autobahn and Twisted do not publish. Every such name is probed when a
link is made, and a connection whose objects lack one stays on ASGI sends (logged once):

- daphne: its ASGI ``send`` is ``functools.partial(server.handle_reply, protocol)`` with the
  server from ``daphne.server``;
- autobahn: ``protocol.state``, ``protocol.STATE_OPEN``, ``protocol.transport``, ``protocol.factory``
  and ``failByDrop`` on both;
- Twisted: ``transport.registerProducer``/``unregisterProducer``, ``producer`` and
  ``streamingProducer``; on plain TCP also ``socket``, ``dataBuffer``, ``offset`` and
  ``_tempDataLen``.

``TICKER_DAPHNE_FAST_PATH=0`` turns the direct writes off (every frame goes through ASGI; the
link still reports the buffer); under any other server ``attach`` finds nothing and the
connection uses ASGI sends, bounded by that server's own flow control.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PROTOCOL_NAMES = ("state", "STATE_OPEN", "transport", "factory", "failByDrop")
TRANSPORT_NAMES = ("registerProducer", "unregisterProducer", "producer", "streamingProducer", "write")
SOCKET_NAMES = ("socket", "dataBuffer", "offset", "_tempDataLen")


@dataclass
class Counters:
    """Bytes-path counts for this process: how frames left, and links refused or demoted."""

    socket_writes: int = 0
    transport_writes: int = 0
    refused: int = 0
    demoted: int = 0


counters = Counters()
_warned: set[str] = set()


def warn_once(what: str, *args: Any) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(what, *args)


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


def missing(obj: Any, names: tuple[str, ...], prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name in names if not hasattr(obj, name)]


def probe(protocol: Any) -> list[str]:
    """The names the fast path reads that ``protocol`` (daphne's WebSocket protocol) lacks."""
    absent = missing(protocol, PROTOCOL_NAMES, "protocol")
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return [*absent, "protocol.transport (None)"]
    absent += missing(transport, TRANSPORT_NAMES, "transport")
    if plain_tcp(transport):
        absent += missing(transport, SOCKET_NAMES, "transport")
    return absent


def plain_tcp(transport: Any) -> bool:
    from twisted.internet import tcp

    return isinstance(transport, tcp.Connection)


class DirectLink:
    """One daphne connection as a byte pipe, and Twisted's producer for it.

    ``on_pause``/``on_resume`` are called when Twisted says the buffer is full or drained.
    """

    __slots__ = ("direct", "on_pause", "on_resume", "open", "previous", "protocol", "socket", "transport")

    direct: bool

    def __init__(
        self, protocol: Any, sndbuf: int, on_pause: Callable[[], None], on_resume: Callable[[], None],
        direct: bool = True,
    ) -> None:
        absent = probe(protocol)
        if absent:
            raise LookupError("daphne fast path needs " + ", ".join(absent))
        self.protocol = protocol
        self.direct = direct  # False: backpressure only, frames go through ASGI
        protocol.failByDrop = False
        if protocol.factory.failByDrop:
            protocol.factory.setProtocolOptions(failByDrop=False)
        self.open = protocol.STATE_OPEN  # autobahn's state once the handshake is done
        self.transport = transport = protocol.transport
        self.socket = transport.socket if plain_tcp(transport) else None
        if self.socket is not None and sndbuf:
            # Cap the kernel's send buffer too (Linux grows it to megabytes for a stalled reader).
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.on_pause, self.on_resume = on_pause, on_resume
        self.previous = transport.producer
        if self.previous is not None:
            if not transport.streamingProducer:
                raise LookupError("the transport has a pull producer")
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    def write(self, frame: bytes) -> None:
        """Send one pre-built frame; never blocks. Raises only when the objects it reads changed."""
        if self.protocol.state != self.open:
            return  # closing: autobahn has sent (or will send) the close frame
        transport = self.transport
        if self.socket is not None and not transport._tempDataLen and len(transport.dataBuffer) == transport.offset:
            try:
                sent = self.socket.send(frame)
            except OSError:  # would block, or a dying socket: Twisted's own write deals with it
                sent = 0
            if sent == len(frame):
                counters.socket_writes += 1
                return
            frame = frame[sent:]
        counters.transport_writes += 1
        transport.write(frame)

    def detach(self) -> None:
        """Stop reporting to the owner (the connection is gone or demoted)."""
        self.on_pause = self.on_resume = _nothing

    # IPushProducer: Twisted calls these.

    def pauseProducing(self) -> None:
        if self.previous is not None:
            self.previous.pauseProducing()
        self.on_pause()

    def resumeProducing(self) -> None:
        if self.previous is not None:
            self.previous.resumeProducing()
        self.on_resume()

    def stopProducing(self) -> None:
        if self.previous is not None:
            self.previous.stopProducing()
        self.detach()


def _nothing() -> None:
    pass


class ResponseLink:
    """A daphne HTTP response that streams (Server-Sent Events), seen only for its backpressure:
    registered as the request's streaming producer (twisted.web's public ``registerProducer``),
    so Twisted says when the response's buffer is full and when it drained. Frames go through
    the ASGI send (``direct`` is False); the kernel send buffer is capped through the
    transport's public ``getHandle()``."""

    __slots__ = ("on_pause", "on_resume", "request")

    direct = False

    def __init__(self, request: Any, sndbuf: int, on_pause: Callable[[], None], on_resume: Callable[[], None]) -> None:
        self.request = request
        self.on_pause, self.on_resume = on_pause, on_resume
        transport = request.channel.transport
        handle = transport.getHandle() if plain_tcp(transport) else None
        if handle is not None and sndbuf:
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        request.registerProducer(self, True)

    def detach(self) -> None:
        self.on_pause = self.on_resume = _nothing

    def pauseProducing(self) -> None:
        self.on_pause()

    def resumeProducing(self) -> None:
        self.on_resume()

    def stopProducing(self) -> None:
        self.detach()


def attach_response(
    send: Callable[..., Any], sndbuf: int, on_pause: Callable[[], None], on_resume: Callable[[], None]
) -> ResponseLink | None:
    """A ``ResponseLink`` for the streaming response behind ``send`` when it is daphne's, else None."""
    request = daphne_protocol(send)
    if request is None:
        return None
    try:
        return ResponseLink(request, sndbuf, on_pause, on_resume)
    except Exception as exc:  # an unexpected daphne or Twisted: the response goes unobserved
        counters.refused += 1
        warn_once("daphne response backpressure unavailable (%s)", exc)
        return None


def daphne_protocol(send: Callable[..., Any]) -> Any | None:
    """The daphne protocol behind an ASGI ``send`` (a WebSocket protocol, or an HTTP request),
    or None under another server."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    owner = getattr(send.func, "__self__", None)
    # daphne's Server or a subclass of it (dashboard/keepalive.py's), named without importing
    # daphne: that would install Twisted's reactor under another server
    if not any(cls.__module__ == "daphne.server" and cls.__name__ == "Server" for cls in type(owner).__mro__):
        return None
    return send.args[0]


def send_close(send: Callable[..., Any], code: int, reason: str) -> bool:
    """Start the closing handshake of the daphne WebSocket behind ``send`` with ``code``, one that
    autobahn lets no application send (1012, service restart: "come back at once").

    autobahn's public ``sendClose`` allows 1000 and 3000-4999 only, and daphne's ASGI close goes
    through it (a ``websocket.close`` with 1012 raises inside the consumer and the client gets
    1011). ``sendCloseFrame`` is the step ``sendClose`` takes after that check: a method with a
    public name (its docstring calls it internal) that writes the close frame, moves the
    protocol to CLOSING and arms autobahn's close-handshake timeout, so the client's answer
    ends the connection and daphne tells the application as for any close. It is the least
    private way: no underscored name, no frame of our own on the transport behind autobahn's
    back (autobahn's state would still say OPEN).

    Returns:
        True when the close frame went out; False when ``send`` is not daphne's (the other
        servers take any code through ASGI), or the connection is not open.
    """
    protocol = daphne_protocol(send)
    if protocol is None or not hasattr(protocol, "sendCloseFrame") or protocol.state != protocol.STATE_OPEN:
        return False
    protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
    return True


def attach(
    send: Callable[..., Any], sndbuf: int, on_pause: Callable[[], None], on_resume: Callable[[], None],
    direct: bool = True,
) -> DirectLink | None:
    """A ``DirectLink`` for the connection behind ``send`` when it is daphne's, else None."""
    protocol = daphne_protocol(send)
    if protocol is None:
        return None
    try:
        return DirectLink(protocol, sndbuf, on_pause, on_resume, direct)
    except Exception as exc:  # an unexpected daphne, autobahn or Twisted: stay on ASGI sends
        counters.refused += 1
        warn_once("daphne fast path unavailable (%s); using ASGI sends", exc)
        return None
