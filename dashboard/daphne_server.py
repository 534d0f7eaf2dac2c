"""daphne with its keepalive pings spread out and its handshakes admitted a few at a time:
``python -m dashboard.daphne_server`` takes daphne's command line and runs daphne with this
module's ``Server``.

daphne checks every connection every 2 s (``Server.timeout_checker``) and pings each WebSocket
whose last ping is older than the ping interval. Connections that arrived together (a ramp, a
reconnect storm) are then all pinged by one callback, and their pongs come back together: at
5,000 connections a callback of 50–67 ms and a pong read of 57–75 ms, every 2 s, with the next
batch of prices waiting behind them. Here the same check runs in ``SLICES`` steps across the
same 2 s: each step visits every ``SLICES``-th connection of the cycle's list, so neighbours in
arrival order fall into different steps. Each connection is still checked once per cycle
(daphne's own ``check_timeouts``); one that arrives during a cycle is first checked in the next,
as under daphne.

Every listener accepts only while the handshakes in flight leave room (``dashboard.admission``;
``TICKER_HANDSHAKES`` sets the limit): when they fill it, the listeners stop reading and the
next connections wait in the kernel's accept queue until a sweep every ``SWEEP_SECONDS`` finds
some settled. What settled means is read from Twisted and autobahn: the transport gone, the
protocol on it now autobahn's and past its opening handshake, or an HTTP request begun on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import daphne.cli
import daphne.server
from twisted.internet import reactor as installed

from dashboard.admission import LIMIT, STOP_ACCEPTING, Admission

CYCLE_SECONDS = 2.0  # daphne's own period
SLICES = 20
SWEEP_SECONDS = 0.01  # how often the connections in their handshake are looked at, while there are any
reactor: Any = cast(Any, installed)  # the installed reactor (daphne's asyncio one): IReactorTime


def steps(connections: Sequence[Any], step: int, slices: int = SLICES) -> Sequence[Any]:
    """The connections one step of a cycle visits: every ``slices``-th, from ``step``."""
    return connections[step::slices]


def handshake_limit() -> int:
    """``TICKER_HANDSHAKES``, or the default; a value that is no count stops the server, saying why."""
    text = os.environ.get("TICKER_HANDSHAKES", "").strip()
    try:
        limit = int(text) if text else LIMIT
    except ValueError:
        limit = 0
    if limit < 1:
        raise SystemExit(f"TICKER_HANDSHAKES must be a whole number of connections, at least 1, not {text!r}")
    return limit


def link(protocol: Any) -> tuple[Any, Any]:
    """A connection's transport, and the protocol that speaks on it now (daphne hands an upgraded
    connection's transport, or its TLS wrapper's inner side, to a WebSocket protocol)."""
    inner = getattr(protocol, "wrappedProtocol", None)  # TLS
    if inner is not None:
        return protocol.transport, inner
    transport = getattr(protocol, "_channel", protocol).transport  # behind Twisted's HTTP/1.1-or-2 switch
    return transport, getattr(transport, "protocol", None)


class Server(daphne.server.Server):  # type: ignore[misc]  # daphne is untyped
    """daphne's server, its timeout and ping checks spread over the cycle, its listeners accepting
    only while the handshakes in flight leave room."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.admission: Admission[Any] = Admission(handshake_limit())
        self.requested: set[Any] = set()  # connections arriving that began an HTTP request
        self.ports: list[Any] = []
        self.accepting = True
        self.sweeping = False
        self.closing = False  # since the drain: no listener reads again

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        if not self.ports:
            reactor.addSystemEventTrigger("before", STOP_ACCEPTING, self.stop_accepting)
        self.ports.append(port)
        factory = port.factory
        if not hasattr(factory, "admitted"):  # one factory can serve several listeners
            factory.buildProtocol = factory.admitted = self.admit(factory.buildProtocol)
        read = port.doRead

        def accept_within_room() -> Any:
            port.numberAccepts = max(1, self.admission.room())  # Twisted takes up to this many in one go
            return read()

        port.doRead = accept_within_room

    def admit(self, build: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``build`` (a listener factory's ``buildProtocol``), each connection it builds counted
        as arriving and its HTTP requests noticed."""

        def built(addr: Any) -> Any:
            protocol = build(addr)
            if protocol is None:
                return None
            channel = getattr(protocol, "wrappedProtocol", protocol)
            request = channel.requestFactory

            def requested(*args: Any) -> Any:
                self.requested.add(protocol)
                return request(*args)

            channel.requestFactory = requested
            if self.admission.arrive(protocol, time.monotonic()):
                self.pause()
            if not self.sweeping:
                self.sweeping = True
                reactor.callLater(SWEEP_SECONDS, self.sweep)
            return protocol

        return built

    def settled(self, protocol: Any) -> bool:
        transport, now = link(protocol)
        if transport is None or transport.disconnected:
            return True
        if hasattr(now, "STATE_CONNECTING"):  # autobahn's: a WebSocket
            return bool(now.state != now.STATE_CONNECTING)
        return protocol in self.requested  # plain HTTP

    def sweep(self) -> None:
        if self.admission.sweep(time.monotonic(), self.settled) and not self.accepting and not self.closing:
            self.accepting = True
            for port in self.ports:
                port.startReading()
        self.requested.intersection_update(self.admission.arriving)
        self.sweeping = bool(self.admission.arriving)
        if self.sweeping:
            reactor.callLater(SWEEP_SECONDS, self.sweep)

    def pause(self) -> None:
        if self.accepting:
            self.accepting = False
            for port in self.ports:
                port.stopReading()

    def stop_accepting(self) -> None:
        """The drain: close the listeners admission holds paused (the drain closes the others)."""
        self.closing = True
        if not self.accepting:
            for port in self.ports:
                port.stopListening()

    def timeout_checker(self) -> None:
        self._cycle: list[Any] = list(self.connections)
        self._check_step(0)

    def _check_step(self, step: int) -> None:
        for protocol in steps(self._cycle, step):
            if protocol in self.connections:  # still open
                protocol.check_timeouts()
        if step + 1 < SLICES:
            reactor.callLater(CYCLE_SECONDS / SLICES, self._check_step, step + 1)
        else:
            self._cycle = []
            reactor.callLater(CYCLE_SECONDS / SLICES, self.timeout_checker)


class CommandLineInterface(daphne.cli.CommandLineInterface):  # type: ignore[misc]
    server_class = Server


if __name__ == "__main__":
    CommandLineInterface.entrypoint()
