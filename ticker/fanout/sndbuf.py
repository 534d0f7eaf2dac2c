"""The kernel's send buffer of a connection, capped.

Linux grows a socket's send buffer to megabytes for a peer that stopped reading (up to
``net.ipv4.tcp_wmem``'s maximum), and the ASGI server only pushes back once that is full: so
a server notices a deaf client late and holds megabytes for it meanwhile. Capping the buffer
(``TICKER_SOCKET_SNDBUF``, 64 KiB by default) makes the server's own flow control, and so the
hub's hold, start within about that much. Daphne's connections are capped by the fast path's
link (``fastpath``); asyncio servers (uvicorn) give their transport's socket through
``get_extra_info("socket")``, reached from the ASGI ``send``, which is a method of the
server's protocol object: ``send.__self__.transport``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any


def cap_asyncio(send: Callable[..., Any], size: int) -> bool:
    """Cap the send buffer of the asyncio connection behind ``send``; False when there is none."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    sock = get_extra_info("socket") if callable(get_extra_info) else None
    if sock is None or not size:
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    return True
