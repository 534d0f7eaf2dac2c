"""The drain on SIGTERM: an app server that goes away tells its clients to come back at once.

What the servers do by themselves: daphne's SIGTERM (Twisted's handler) stops the reactor,
which cancels every application, and clients see 1006 and back off; uvicorn's stops
accepting, sends every WebSocket 1012, then waits for the other connections with no end (an
event stream never ends by itself). So once its services start, the ticker takes SIGTERM
itself when ``dashboard.serve`` started the server (``install``), and on it:

1. stops accepting: under daphne, every listening port of the reactor (Twisted's public
   ``IReactorFDSet.getReaders`` and ``IListeningPort.stopListening``); under uvicorn, by
   calling uvicorn's own handler, which also sends its WebSockets 1012 and waits;
2. lets every client go (``Hub.restart``): each WebSocket gets 1012 (service restart), each
   event stream ends with a ``retry:`` hint; clients reconnect after a short jitter and resume;
3. waits until no request is in flight (``InFlight``), up to the deadline (``TICKER_DRAIN_SECONDS``);
4. calls the server's handler (again): daphne stops as before, with nothing left to cancel;
   uvicorn, told twice, stops waiting.

A second SIGTERM during the drain goes to the server's handler at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, cast

from dashboard.admission import STOP_ACCEPTING
from ticker.fanout.hub import Hub

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any] | int | None


class InFlight:
    """How many requests (HTTP and WebSocket) the application is serving: ``with in_flight:``
    around each; ``idle`` is set while there are none."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.idle.clear()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.count -= 1
        if not self.count:
            self.idle.set()


class Drain:
    """SIGTERM's handler for one server process (see the module docstring)."""

    def __init__(self, hub: Hub, in_flight: InFlight, server: str, seconds: float) -> None:
        self.hub = hub
        self.in_flight = in_flight
        self.server = server
        self.seconds = seconds
        self.previous: Handler = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None

    def install(self) -> bool:
        """Take SIGTERM from the server (call in the event loop's thread). False where a signal
        handler cannot be set (not the main thread): the server's own handler stays.

        ``signal.signal`` rather than ``loop.add_signal_handler``: the server's handler is kept to
        be called after the drain (removing an asyncio handler would restore the default instead).
        """
        if threading.current_thread() is not threading.main_thread():
            log.warning("drain: not the main thread; SIGTERM stays the server's")
            return False
        self.loop = asyncio.get_running_loop()
        self.previous = signal.signal(signal.SIGTERM, self.on_signal)
        return True

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler (between two bytecodes of the main thread): hand over to the loop."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.begin)

    def begin(self) -> None:
        if self.task is not None:
            log.warning("drain: SIGTERM again; stopping now")
            self.pass_on()
            return
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        started = time.monotonic()
        if self.server == "daphne":
            stopped = stop_listening()
        else:
            self.pass_on()  # uvicorn stops accepting on its own
            stopped = 1
        told = self.hub.restart()
        log.info("drain: %d listener(s) closed, %d client(s) told to reconnect (1012)", stopped, told)
        try:
            await asyncio.wait_for(self.in_flight.idle.wait(), self.seconds)
            log.info("drain: every connection gone after %.2f s", time.monotonic() - started)
        except TimeoutError:
            log.warning("drain: %d request(s) still open after %.0f s; stopping", self.in_flight.count, self.seconds)
        self.pass_on()

    def pass_on(self) -> None:
        """Call the handler SIGTERM had before ``install``; the default one ends the process."""
        previous = self.previous
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)


def stop_listening() -> int:
    """Close every listening port of Twisted's reactor (daphne's); how many were closed. Those
    that admission holds paused (``dashboard.daphne_server``) are closed by their server, on
    ``STOP_ACCEPTING``."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IListeningPort

    readers: list[Any] = cast(Any, reactor).getReaders()  # the installed reactor: IReactorFDSet
    cast(Any, reactor).fireSystemEvent(STOP_ACCEPTING)
    ports = [reader for reader in readers if IListeningPort.providedBy(reader)]
    for port in ports:
        port.stopListening()
    return len(ports)
