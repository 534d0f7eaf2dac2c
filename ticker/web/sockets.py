"""Closing the connection under a response the application gave up on, whatever its client reads.

Ending a response (``more_body: False``) is not enough to free its socket: the server keeps an
HTTP/1.1 connection open for the next request, and a close waits until what is buffered for the
peer is written, which a client that stopped reading never lets happen. ``closer(send)(linger)``
closes the connection now and, if it is still open ``linger`` seconds later, aborts it (a TCP
reset): a client that reads again within that time gets the end of the response, then the close.

ASGI has no message for this, so it reads what the servers do not publish, as
``ticker.fanout.fastpath`` and ``ticker.fanout.sndbuf`` do: under daphne the ASGI ``send`` is
``functools.partial(server.handle_reply, request)`` and ``request.channel.transport`` is
Twisted's (``loseConnection``, ``abortConnection``); under an asyncio server (uvicorn) ``send``
is a method of the server's per-request object, whose ``transport`` is asyncio's (``close``,
``abort``). Under any other server ``closer`` finds nothing and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..fanout import fastpath


def _transport(send: Callable[..., Any]) -> Any | None:
    request = fastpath.daphne_protocol(send)
    if request is not None:
        return getattr(getattr(request, "channel", None), "transport", None)
    return getattr(getattr(send, "__self__", None), "transport", None)


def closer(send: Callable[..., Any]) -> Callable[[float], None] | None:
    """A ``shut(linger)`` for the connection behind ``send``, found now: daphne forgets the
    connection of a response once it ends. ``shut`` closes the connection, and aborts it if it is
    still open ``linger`` seconds later.

    Returns:
        None when the server's transport was not found (nothing can be done).
    """
    transport = _transport(send)
    close = getattr(transport, "loseConnection", None) or getattr(transport, "close", None)
    abort = getattr(transport, "abortConnection", None) or getattr(transport, "abort", None)
    if not (callable(close) and callable(abort)):
        return None

    def shut(linger: float) -> None:
        close()
        asyncio.get_running_loop().call_later(linger, abort)

    return shut
