"""How many connections may be in their opening handshake at once, pure (no I/O, no clock:
``now`` is given, seconds on a steady clock).

A reconnect storm puts hundreds of fresh connections in the kernel's accept queue at once. A
server that accepts them all reads all their upgrade requests in the same turn of its loop: at
about 1.3 ms of CPU each (HTTP parse, the WebSocket handshake, the consumer's connect), 1,000 of
them are a turn of more than a second with the next batch of prices waiting behind it. Here a
server accepts only while fewer than ``limit`` connections are *arriving* (accepted, not yet
settled); the rest wait in the kernel's queue, where waiting costs the process nothing and the
handshake timeout has not started.

A connection is settled when it is gone, when its WebSocket handshake is over (open or refused),
when its HTTP request has come (plain HTTP is not held back), or ``settle_seconds`` after it was
accepted, whatever it did: an idle connection holds a place for that long at most, so a client
that opens sockets and sends nothing slows admission but cannot stop it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

# The Twisted system event an app server's drain fires before it closes the listening ports it
# sees: listeners that admission stopped reading are not among them, so their server closes them.
STOP_ACCEPTING = "ticker-stop-accepting"
LIMIT = 32  # connections in their opening handshake at once: about 40 ms of one loop turn
SETTLE_SECONDS = 1.0  # the longest an accepted connection counts as arriving

K = TypeVar("K")


class Admission(Generic[K]):
    """The connections arriving, since when; how many more may be accepted now."""

    def __init__(self, limit: int = LIMIT, settle_seconds: float = SETTLE_SECONDS) -> None:
        if limit < 1:
            raise ValueError(f"the handshake limit must be at least 1, not {limit}")
        self.limit = limit
        self.settle_seconds = settle_seconds
        self.arriving: dict[K, float] = {}
        self.admitted = 0  # connections accepted, ever
        self.paused = 0  # times accepting stopped because the limit was reached

    def room(self) -> int:
        """How many connections may be accepted now."""
        return max(0, self.limit - len(self.arriving))

    def arrive(self, key: K, now: float) -> bool:
        """A connection was accepted. True when that filled the room: stop accepting."""
        self.arriving[key] = now
        self.admitted += 1
        full = not self.room()
        self.paused += full
        return full

    def sweep(self, now: float, settled: Callable[[K], bool]) -> bool:
        """Forget the connections that settled (by ``settled``, or by age). True when there is
        room again (accepting may resume)."""
        oldest = now - self.settle_seconds
        for key, since in list(self.arriving.items()):
            if since <= oldest or settled(key):
                del self.arriving[key]
        return self.room() > 0
