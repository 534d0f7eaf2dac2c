"""One outgoing path per connection: how a frame reaches it without ever making the hub wait.

Every frame to a connection, the hub's batches and the consumer's replies alike, goes through
``Client.deliver``, the one place that chooses between daphne's fast path (a ``DirectLink``)
and the ASGI ``send``, and the one that knows whether the connection may be sent to now.
That is the client's ``state``:

- ``LIVE``: frames go out.
- ``HELD_BUFFER``: daphne's fast path reports Twisted's buffer full (``fastpath``).
- ``HELD_SEND``: the server suspended an ASGI send (uvicorn does while its buffer for the
  connection is full; daphne never does). Awaiting it would stall the fan-out loop behind one
  slow reader, so ``deliver`` runs the send coroutine one step and leaves the rest to a task.
- ``HELD_ACKS``: the client acknowledges frames and sat on one too long (the hub decides).
- ``CLOSING``: the connection is going away; nothing more is sent.

A held client is sent nothing, so nothing piles up for it. Each change between live and held
is put on the client's ``Outbox`` (shared by the hub's clients), which the hub drains: the
hub takes a held client out of its group and, once the client is live again, catches it up.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any, cast

from . import fastpath
from . import sndbuf as sndbuf_cap
from .types import NOTHING, Selection, Send

log = logging.getLogger(__name__)


class State(enum.Enum):
    LIVE = "live"
    HELD_BUFFER = "held: buffer full"
    HELD_SEND = "held: send suspended"
    HELD_ACKS = "held: no acks"
    CLOSING = "closing"


class Frame:
    """One frame, built once and sent to many: its text, the RFC 6455 bytes that carry it on a
    WebSocket, and (made on first use) the ASGI message for a WebSocket and the Server-Sent Event
    that carries it on an event stream: ``event: <kind>``, ``id: <mark>`` (when there is one), ``data: <text>``.
    A frame with no kind is a keep-alive comment: only event streams are sent one."""

    __slots__ = ("_event", "_message", "kind", "mark", "text", "wire")

    def __init__(self, text: str, kind: str = "", mark: str = "") -> None:
        self.text = text
        self.kind = kind
        self.mark = mark
        self.wire = fastpath.text_frame(text.encode())
        self._message: dict[str, Any] | None = None
        self._event: dict[str, Any] | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The ASGI ``websocket.send`` message of this frame (made on first use: daphne's fast path
        writes ``wire`` and never needs it)."""
        if self._message is None:
            self._message = {"type": "websocket.send", "text": self.text}
        return self._message

    @property
    def event(self) -> dict[str, Any]:
        """The ASGI ``http.response.body`` message of this frame as a Server-Sent Event."""
        if self._event is None:
            if not self.kind:
                body = b": keep-alive\n\n"
            else:
                mark = f"id: {self.mark}\n" if self.mark else ""
                body = f"event: {self.kind}\n{mark}data: {self.text}\n\n".encode()
            self._event = {"type": "http.response.body", "body": body, "more_body": True}
        return self._event


KEEP_ALIVE = Frame("")


class Outbox:
    """Clients whose state changed between live and held, for the hub to act on in order."""

    def __init__(self) -> None:
        self.changed: deque[Client] = deque()
        self.ready = asyncio.Event()

    def put(self, client: Client) -> None:
        self.changed.append(client)
        self.ready.set()

    def take(self) -> list[Client]:
        self.ready.clear()
        taken = list(self.changed)
        self.changed.clear()
        return taken


class Client:
    """A connection as the fan-out sees it: how to send to it, what it follows (``selection`` and
    ``joined``, set by the hub), whether it may be sent to (``state``). What it missed while held
    and what it acknowledged are the hub's ``Holds``."""

    __slots__ = ("joined", "link", "outbox", "response", "selection", "send", "stall", "state", "stream")

    def __init__(
        self, send: Send, outbox: Outbox, *, fast_path: bool = False, sndbuf: int = 0, observe: bool = True,
        stream: bool = False,
    ) -> None:
        self.send = send
        self.outbox = outbox
        self.state = State.LIVE
        self.selection: Selection = NOTHING
        self.joined = 0  # the seq of the snap it got when it was last (re)filed
        self.stall: asyncio.Task[None] | None = None
        self.stream = stream  # an event stream (SSE) rather than a WebSocket
        # Under daphne a link reports the connection's buffer; it writes frames itself on the fast path.
        self.link: fastpath.DirectLink | None = None  # a WebSocket's
        self.response: fastpath.ResponseLink | None = None  # an event stream's
        if stream:
            self.response = fastpath.attach_response(send, sndbuf, self._paused, self._resumed) if observe else None
        elif fast_path or observe:
            self.link = fastpath.attach(send, sndbuf, self._paused, self._resumed, fast_path)
        if self.link is None and self.response is None:
            sndbuf_cap.cap_asyncio(send, sndbuf)

    @property
    def sees_buffer(self) -> bool:
        """True when the server reports this connection's buffer (daphne, through its link)."""
        return self.link is not None or self.response is not None

    @property
    def writes_direct(self) -> bool:
        """True when frames go straight to the transport (daphne's fast path)."""
        return self.link is not None and self.link.direct

    def deliver(self, frame: Frame) -> bool:
        """Send ``frame`` now if the client is live; False when it was not sent (held or closing)."""
        if self.state is not State.LIVE:
            return False
        link = self.link
        if link is not None and link.direct:
            try:
                link.write(frame.wire)
                return True
            except Exception as exc:
                self._demote(exc)
        step = cast(Coroutine[Any, Any, None], self.send(frame.event if self.stream else frame.message))
        try:
            awaited = step.send(None)
        except StopIteration:
            return True
        except Exception:
            log.debug("send failed; the connection is going away", exc_info=True)
            return False
        self._hold(State.HELD_SEND)
        self.stall = asyncio.get_running_loop().create_task(self._finish(step, awaited))
        return True

    def hold_for_acks(self) -> None:
        self._hold(State.HELD_ACKS)

    def release_acks(self) -> None:
        self._release(State.HELD_ACKS)

    def close(self) -> None:
        """The connection is going away: send nothing more, forget the server's objects."""
        self.state = State.CLOSING
        for link in (self.link, self.response):
            if link is not None:
                link.detach()
        if self.stall is not None:
            self.stall.cancel()

    def _hold(self, reason: State) -> None:
        if self.state is State.LIVE:
            self.state = reason
            self.outbox.put(self)

    def _release(self, reason: State) -> None:
        if self.state is reason:
            self.state = State.LIVE
            self.outbox.put(self)

    def _paused(self) -> None:
        self._hold(State.HELD_BUFFER)

    def _resumed(self) -> None:
        self._release(State.HELD_BUFFER)

    def _demote(self, exc: Exception) -> None:
        """A direct write raised: this connection goes on with ASGI sends (its link still reports
        the buffer)."""
        fastpath.counters.demoted += 1
        fastpath.warn_once("daphne fast path failed on a connection (%r); it goes on with ASGI sends", exc)
        assert self.link is not None
        self.link.direct = False

    async def _finish(self, step: Coroutine[Any, Any, None], awaited: Any) -> None:
        """Drive a send that suspended on ``awaited`` (a future, or None for a bare yield) to its end."""
        try:
            while True:
                try:
                    if awaited is None:
                        await asyncio.sleep(0)
                    else:
                        # The future the send yielded, taken as a task would take it: clear the
                        # flag that says "yielded to a task", then wait for it.
                        awaited._asyncio_future_blocking = False
                        await awaited
                except BaseException as exc:  # including our own cancellation: the send sees it
                    try:
                        awaited = step.throw(exc)
                    except StopIteration:
                        return
                    continue
                try:
                    awaited = step.send(None)
                except StopIteration:
                    return
        except Exception:
            log.debug("suspended send failed; the connection is going away", exc_info=True)
            self.state = State.CLOSING
        finally:
            self.stall = None
            self._release(State.HELD_SEND)
