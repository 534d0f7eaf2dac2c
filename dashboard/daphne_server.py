"""daphne with its keepalive pings spread out: ``python -m dashboard.daphne_server`` takes
daphne's command line and runs daphne with this module's ``Server``.

daphne checks every connection every 2 s (``Server.timeout_checker``) and pings each WebSocket
whose last ping is older than the ping interval. Connections that arrived together (a ramp, a
reconnect storm) are then all pinged by one callback, and their pongs come back together: at
5,000 connections a callback of 50–67 ms and a pong read of 57–75 ms, every 2 s, with the next
batch of prices waiting behind them. Here the same check runs in ``SLICES`` steps across the
same 2 s: each step visits every ``SLICES``-th connection of the cycle's list, so neighbours in
arrival order fall into different steps. Each connection is still checked once per cycle
(daphne's own ``check_timeouts``); one that arrives during a cycle is first checked in the next,
as under daphne.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import daphne.cli
import daphne.server
from twisted.internet import reactor as installed

CYCLE_SECONDS = 2.0  # daphne's own period
SLICES = 20
reactor: Any = cast(Any, installed)  # the installed reactor (daphne's asyncio one): IReactorTime


def steps(connections: Sequence[Any], step: int, slices: int = SLICES) -> Sequence[Any]:
    """The connections one step of a cycle visits: every ``slices``-th, from ``step``."""
    return connections[step::slices]


class Server(daphne.server.Server):  # type: ignore[misc]  # daphne is untyped
    """daphne's server, its timeout and ping checks spread over the cycle."""

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
