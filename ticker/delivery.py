"""How one frame reaches one connection without ever making the hub wait.

The hub sends each frame to many connections in a plain loop. An ASGI ``send`` is a coroutine,
and a server may suspend it: uvicorn does when its buffer for that connection is full (asyncio
flow control), daphne never does. Awaiting such a send would stall the loop, and every other
client with it, behind one slow reader. So ``send_now`` runs the send coroutine one step: if it
finishes, done (the usual case: no task, no future); if it suspends, the rest of that send is
left to a ``Stall`` task, and the hub holds the client (sends it nothing) until that finishes.

A ``Client`` is held while any of these is true, and caught up (a ``snap``) when none is:

- a send is stalled in the server (``stall``: above);
- daphne's fast path reports Twisted's buffer full (``link.blocked``: ``ticker.fastpath``);
- it acknowledges frames and has sat on one too long (``paused_at``: ``ticker.hub``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .fastpath import DirectLink, text_frame

log = logging.getLogger(__name__)

ACK_INTERVAL_MS = 2000  # how often a client that acks is asked to (hello.limits.ack_ms)
ACK_TIMEOUT = 5.0  # seconds a sent frame may stay unacknowledged before the client is paused

Send = Callable[[dict[str, Any]], Awaitable[None]]
Key = frozenset[str] | None  # a subscription: some symbols, or None for the whole board
NOTHING: frozenset[str] = frozenset()


def text_message(frame: str) -> dict[str, Any]:
    """The ASGI message that sends ``frame``; built once and given to every recipient."""
    return {"type": "websocket.send", "text": frame}


class Client:
    """A connection as the hub sees it: its ASGI ``send`` (or, on daphne's fast path, its
    ``DirectLink``), its subscription, its acknowledgements, and whether it is held."""

    __slots__ = ("acked", "joined", "link", "paused_at", "send", "stall", "symbols")

    def __init__(self, send: Send, link: DirectLink | None = None) -> None:
        self.send = send
        self.link = link
        self.symbols: Key = NOTHING
        self.acked: int | None = None  # the last seq it acknowledged; None: it does not ack
        self.joined = 0  # the seq of the snap it got when it joined its group
        self.paused_at: int | None = None  # the last seq sent to it before an ack pause
        self.stall: asyncio.Task[None] | None = None  # a send the server is holding

    @property
    def held(self) -> bool:
        """True while the client must be sent nothing."""
        return self.paused_at is not None or self.stall is not None or (self.link is not None and self.link.blocked)


class Group:
    """The clients with the same subscription, and when recent frames were sent to them.

    ``clients`` get frames through ASGI ``send``; ``direct`` ones through their ``DirectLink``.
    """

    __slots__ = ("clients", "direct", "sends")

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.direct: set[Client] = set()
        self.sends: deque[tuple[int, float]] = deque(maxlen=64)  # (seq, monotonic time) per frame

    @property
    def sent_seq(self) -> int:
        return self.sends[-1][0] if self.sends else 0

    def overdue_seq(self, now: float) -> int:
        """The newest seq sent to this group more than ``ACK_TIMEOUT`` ago (0 if none)."""
        for seq, at in reversed(self.sends):
            if now - at > ACK_TIMEOUT:
                return seq
        return 0

    def deliver(self, frame: str, on_stall: Callable[[Client, Coroutine[Any, Any, None], Any], None]) -> None:
        """Send one frame to every client of the group: built once, sent as it is."""
        if self.clients:
            message = text_message(frame)
            for client in tuple(self.clients):
                send_now(client, message, on_stall)
        if self.direct:
            data = text_frame(frame.encode())
            for client in tuple(self.direct):
                client.link.write(data)  # type: ignore[union-attr]


def send_now(
    client: Client, message: dict[str, Any], on_stall: Callable[[Client, Coroutine[Any, Any, None], Any], None]
) -> None:
    """Start ``client.send(message)`` and run it as far as it goes without waiting.

    When the server suspends it, ``on_stall(client, coroutine, awaited)`` gets the rest.
    A send that fails means the connection is going away: its consumer will leave.
    """
    step = client.send(message)
    try:
        awaited = step.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return
    except Exception:
        log.debug("send failed", exc_info=True)
        return
    on_stall(client, step, awaited)  # type: ignore[arg-type]


async def finish(step: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Drive a send coroutine that suspended on ``awaited`` (a future, or None for a bare
    yield) to its end, from a task of its own."""
    while True:
        try:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                # The future the send yielded, as a task would take it: clear the flag that
                # says "yielded to a task" (a task does that on receipt), then wait for it.
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

