"""Cheaper WebSocket handshakes under daphne: autobahn's option dump made only when it is read.

For every new connection autobahn builds a debug line of the protocol's 29 options with
``pprint.pformat`` before it asks the logger whether debug is on (it never is here): about
0.3 ms of a 1.3 ms handshake, a fifth of what a reconnect storm costs daphne (DESIGN.md §8).
``defer_option_dump`` gives that module a ``pformat`` that only wraps its argument; the text is
made when a log observer formats the line, so debug logging shows the same lines as before.

It replaces a name in ``autobahn.websocket.protocol`` (autobahn < 27 as locked); where that
module no longer uses ``pprint.pformat`` it changes nothing and says so.
"""

from __future__ import annotations

import logging
import pprint
from typing import Any

log = logging.getLogger(__name__)


class Deferred:
    """``pformat(value)``, made when the line is formatted."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    __repr__ = __str__


def defer_option_dump() -> bool:
    """Make autobahn's per-connection debug dumps lazy; False where autobahn is absent or changed."""
    try:
        from autobahn.websocket import protocol
    except ImportError:  # no daphne here (uvicorn only)
        return False
    current = getattr(protocol, "pformat", None)
    if current is Deferred:
        return True
    if current is not pprint.pformat:
        log.warning("autobahn.websocket.protocol no longer uses pprint.pformat: handshakes keep its cost")
        return False
    protocol.__dict__["pformat"] = Deferred  # a wrapper where a str was made: not pformat's type
    return True
