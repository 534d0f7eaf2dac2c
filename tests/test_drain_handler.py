"""The drain's SIGTERM handler in this process (dashboard/drain.py), with a stand-in for the
server's own handler: what it tells the hub, when it hands the signal on, the deadline, a second
SIGTERM. tests/test_drain.py runs it under real daphne and uvicorn."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from dashboard.drain import Drain, InFlight
from tests.helpers.waiting import eventually


class Hub:
    """What the drain asks of the hub: ``restart``, counted."""

    def __init__(self) -> None:
        self.restarts = 0

    def restart(self) -> int:
        self.restarts += 1
        return 3


@pytest.fixture
def server_handler() -> Iterator[list[int]]:
    """The server's SIGTERM handler, standing in: the signals it was handed."""
    handed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handed.append(signum))
    try:
        yield handed
    finally:
        signal.signal(signal.SIGTERM, previous)


def drain_for(server: str, seconds: float) -> tuple[Drain, Hub, InFlight]:
    hub, in_flight = Hub(), InFlight()
    drain = Drain(hub, in_flight, server, seconds)  # type: ignore[arg-type]
    assert drain.install()
    return drain, hub, in_flight


async def test_uvicorn_is_handed_the_signal_at_once_and_again_once_the_requests_are_done(server_handler):
    drain, hub, in_flight = drain_for("uvicorn", 30.0)
    with in_flight:  # a request still being served
        os.kill(os.getpid(), signal.SIGTERM)
        await eventually(lambda: hub.restarts == 1, 5, what="the hub to be restarted")
        assert server_handler == [signal.SIGTERM]  # uvicorn stops accepting itself
        assert drain.task is not None and not drain.task.done()
    await eventually(lambda: drain.task is not None and drain.task.done(), 5, what="the drain to end")
    assert server_handler == [signal.SIGTERM, signal.SIGTERM]  # told twice: uvicorn stops waiting


async def test_past_the_deadline_the_server_is_handed_the_signal_with_requests_still_open(server_handler):
    drain, hub, in_flight = drain_for("uvicorn", 0.05)
    with in_flight:  # never done while the drain waits
        os.kill(os.getpid(), signal.SIGTERM)
        await eventually(lambda: len(server_handler) == 2, 5, what="the deadline")
        assert hub.restarts == 1 and drain.task is not None and drain.task.done()


async def test_a_second_sigterm_hands_the_signal_on_at_once(server_handler):
    drain, hub, in_flight = drain_for("uvicorn", 30.0)
    with in_flight:
        os.kill(os.getpid(), signal.SIGTERM)
        await eventually(lambda: server_handler == [signal.SIGTERM], 5, what="the first")
        os.kill(os.getpid(), signal.SIGTERM)
        await eventually(lambda: len(server_handler) == 2, 5, what="the second, at once")
        assert hub.restarts == 1
    assert drain.task is not None
    await drain.task


def test_in_flight_is_idle_only_while_nothing_is_served():
    in_flight = InFlight()
    assert in_flight.idle.is_set()
    with in_flight, in_flight:
        assert in_flight.count == 2 and not in_flight.idle.is_set()
    assert in_flight.count == 0 and in_flight.idle.is_set()
