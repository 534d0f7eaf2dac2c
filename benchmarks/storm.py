"""The storm case: while steady clients read, M more connect at once (``loadclient --storm M``).

A reconnect storm is what a worker restart, a deploy or a network blip does to a server: every
client that was cut comes back in the same second. The load client's steady connections (its
ramp, at ``--connect-rate``) read undisturbed for ``--duration`` seconds; then the newcomers are
started together, one task each, unpaced and with no cap on handshakes in flight (only the
client's own file descriptors bound them), from a client process of their own so that their
handshakes do not hold up the steady clients' reading. The storm window runs from that moment
until every newcomer is live (its first ``snap`` or ``q`` arrived) or lost (refused, closed, or
not live by ``--storm-deadline``); the coordinator (``loadclient.Coordinator``) tells the steady
clients' processes when it starts and ends.

Measured: the steady clients' freshness over the seconds before the storm and over the storm
window, and each newcomer's time from the storm's start to its ``hello`` and to its first
update. Lost newcomers are counted by reason and left out of those percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from .wsclient import DIALECTS, Conn, Group, Owner, freshness, list_percentiles

NOT_LIVE = "not live by the deadline"  # a hello, then no update in time
# Issue 17's target for a storm: the steady clients' p99 over the window, every newcomer live within 3 s, none lost.
STEADY_P99_MS, LIVE_WITHIN_MS = 250, 3000


class Host(Owner, Protocol):
    """What the storm needs from the client process that runs it (``loadclient.Worker``)."""

    opts: argparse.Namespace
    newcomers: Group

    async def open(self, conn: Conn, timeout: float, rcvbuf: int = 0) -> str | None: ...


class Outcome(NamedTuple):
    """One newcomer: ms from the storm's start to its hello and to its first update, or why it was lost."""

    hello_ms: float | None
    live_ms: float | None
    lost: str | None


async def arrive(host: Host, indices: Sequence[int], deadline: float) -> tuple[list[Outcome], float]:
    """Connect the newcomers ``indices`` all at once, each given ``deadline`` seconds to go live;
    every newcomer's outcome and the storm window's length in seconds."""
    conns = [DIALECTS[host.opts.dialect](host, index, host.newcomers) for index in indices]
    for conn in conns:
        conn.live = host.loop.create_future()
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(newcomer(host, conn, started, deadline) for conn in conns))
    return list(outcomes), time.perf_counter() - started


async def newcomer(host: Host, conn: Conn, started: float, deadline: float) -> Outcome:
    """Connect one newcomer and wait for its first update, until ``deadline`` s after ``started``."""
    live = conn.live
    assert live is not None
    lost = await host.open(conn, deadline)
    if lost:
        if not live.cancel():  # the connection was lost first: its exception is read here
            live.exception()
        return Outcome(None, None, lost)
    hello = (conn.connected_at - started) * 1000
    try:
        async with asyncio.timeout(max(0.0, started + deadline - time.perf_counter())):
            at = await live
    except TimeoutError:
        return Outcome(hello, None, NOT_LIVE)
    except ConnectionError as exc:
        return Outcome(hello, None, str(exc))
    return Outcome(hello, (at - started) * 1000, None)


def spread(values: list[float]) -> dict[str, float | None]:
    return dict(zip(("p50", "p99", "max"), list_percentiles(values, (50, 99, 100)), strict=True))


def summary(before: dict[str, Any], during: dict[str, Any], outcomes: Sequence[Sequence[Any]],
            windows: Sequence[float], deadline: float) -> dict[str, Any]:
    """The storm's figures: the steady clients' freshness before it and during its window (their
    ``Group.summary``, merged over the client processes), the newcomers' times to ``hello`` and to
    their first update (ms, over those that got there) and the newcomers lost, by reason."""
    outcomes = [Outcome(*o) for o in outcomes]  # they travel between processes as tuples
    lost = Counter(o.lost for o in outcomes if o.lost)
    return {
        "newcomers": len(outcomes), "deadline_s": deadline, "window_s": round(max(windows, default=0.0), 2),
        "steady_before_ms": freshness(before), "steady_during_ms": freshness(during),
        "steady_closed": sum(during["closes"].values()),
        "hello_ms": spread([o.hello_ms for o in outcomes if o.hello_ms is not None]),
        "live_ms": spread([o.live_ms for o in outcomes if o.live_ms is not None]),
        "live": sum(o.live_ms is not None for o in outcomes),
        "lost": sum(lost.values()), "lost_by": dict(lost.most_common()),
    }


def met(figures: dict[str, Any]) -> bool:
    """Whether a storm's ``summary`` meets the target: the steady clients' p99 in the window at most
    ``STEADY_P99_MS``, every newcomer live within ``LIVE_WITHIN_MS``, none lost."""
    p99, last = figures["steady_during_ms"]["p99"], figures["live_ms"]["max"]
    return (not figures["lost"] and p99 is not None and p99 <= STEADY_P99_MS and last is not None
            and last <= LIVE_WITHIN_MS)
