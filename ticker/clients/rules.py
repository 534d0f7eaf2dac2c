"""The client rules of the quote stream: what a client does when its connection closes, how long
it waits before it reconnects, when it resumes, and when the prices it shows are stale.

The one statement of them for the Python clients: the terminal client (``ticker/clients/``), the
bench's page clients (``benchmarks/pageclient.py``) and the test helpers
(``tests/helpers/clients.py``). The page states the same rules in
``ticker/static/ticker/rules.js``, and ``tests/test_client_rules.py`` holds the two equal. The
close codes are ``ticker/protocol.py``'s; docs/PROTOCOL.md ("Close codes", "Reconnect and
resume") is the contract.

Pure: no I/O and no clock of its own. Times are milliseconds, passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from enum import Enum
from typing import Any

from .. import protocol as p

PROTOCOL_VERSION = p.VERSION  # named in the socket's URL: /ws/quotes/?v=1

# Reconnection: exponential backoff with full jitter (each wait drawn uniformly below the cap), so
# that a restarted server is not hit by every client at the same instant.
RETRY_BASE_MS = 500
RETRY_CAP_MS = 15_000
STABLE_AFTER_MS = 5_000  # a connection up this long resets the backoff
# A server going away (a deploy's SIGTERM) closes with 1012: reconnect at once, spread over a
# short jitter so that its clients do not arrive at the other servers in one instant; no backoff.
CLOSE_RECONNECT_AT_ONCE = frozenset({p.WS_1012_SERVICE_RESTART})
RESTART_JITTER_MS = p.RESTART_JITTER_MS
FAILURES_FOR_CAP = math.ceil(math.log2(RETRY_CAP_MS / RETRY_BASE_MS))  # 0.5 s * 2**5 > 15 s

# Liveness: ping a line quiet this long (a quiet market sends nothing); drop one quiet this long
# (a half-open TCP connection never closes); start over on one open this long without a snapshot.
PING_AFTER_MS = 2_000
DEAD_AFTER_MS = 15_000
SYNC_TIMEOUT_MS = 10_000

# Stale marks: the prices shown are stale once no frame at all came for STALE_AFTER_MS, or no quote
# for FEED_DOWN_AFTER_MS while something watched trades (frames such as pongs still arrive: the
# feed is down). 4 s stays below the 5 s freshness promise by more than a batch's delivery time.
STALE_AFTER_MS = 5_000
FEED_DOWN_AFTER_MS = 4_000


class OnClose(Enum):
    """What a client does when its connection closes with a given code."""

    BACKOFF = "reconnect after the backoff, then resume"
    RESTART = "the server is restarting: reconnect after a short jitter (no backoff), then resume"
    NEEDS_A_FIX = "the client sent what the server refuses: reconnecting soon cannot help, wait the full cap"


# Flood or policy, a frame too big: 4008/4009 since the protocol's own codes moved to 4000+, and
# 1008/1009 for older servers. 1012 is RESTART. Every other code (1000, 1001, 1006, 1011, 1013,
# 4013, none at all) is BACKOFF.
CLOSE_NEEDS_A_FIX = frozenset({p.WS_1008_POLICY, p.WS_1009_MESSAGE_TOO_BIG, p.WS_4008_POLICY, p.WS_4009_TOO_BIG})


def on_close(code: int | None) -> OnClose:
    """The rule for a close with ``code`` (None or 0: the connection was lost, no close frame)."""
    if code in CLOSE_NEEDS_A_FIX:
        return OnClose.NEEDS_A_FIX
    return OnClose.RESTART if code in CLOSE_RECONNECT_AT_ONCE else OnClose.BACKOFF


def failures_after_close(code: int | None, failures: int) -> int:
    """The failure count a close leaves: one that needs a fix makes the next wait the full cap; a
    restart starts the count over (the server went away, the client did nothing wrong)."""
    rule = on_close(code)
    if rule is OnClose.NEEDS_A_FIX:
        return max(failures, FAILURES_FOR_CAP)
    return 0 if rule is OnClose.RESTART else failures


def backoff_delay(failures: int, rng: Callable[[], float] = random.random) -> float:
    """Full jitter: a uniform wait in [0, min(cap, base · 2^failures)), in seconds."""
    return float(rng() * min(RETRY_CAP_MS, RETRY_BASE_MS * 2**failures)) / 1000


def reconnect_delay(
    code: int | None, failures: int, rng: Callable[[], float] = random.random, retry_ms: int | None = None
) -> float:
    """The wait before reconnecting after a close with ``code`` (with ``failures`` counted by
    ``failures_after_close``), in seconds: a restart's jitter below RESTART_JITTER_MS, else the
    backoff. ``retry_ms``: the ``retry:`` field an event stream ended with (the server sends one
    when it goes away, already drawn below RESTART_JITTER_MS): waited as it is, as a browser's
    EventSource does."""
    if retry_ms is not None:
        return retry_ms / 1000
    if on_close(code) is OnClose.RESTART:
        return float(rng() * RESTART_JITTER_MS) / 1000
    return backoff_delay(failures, rng)


def holds_position(epoch: str, seq: int) -> bool:
    """True when a client holds a place in the stream to resume from: an epoch and a seq applied."""
    return bool(epoch) and seq > 0


def seq_after_hello(epoch: str, seq: int, hello_epoch: str) -> int:
    """The seq a client keeps after a ``hello``: one of another epoch means the feed restarted, so
    what it holds belongs to another run (0); the ``snap`` that follows refills it."""
    return 0 if epoch and hello_epoch != epoch else seq


def opening(epoch: str, seq: int, hello_epoch: str, symbols: list[str] | str) -> dict[str, Any]:
    """The request that answers ``hello``: ``resume`` from the epoch and seq held when they are of
    the hello's epoch (the server then sends only what was missed), else ``sub``. A ``resume`` the
    server refuses (an ``err`` before any quote) is followed by a plain ``sub``."""
    if holds_position(epoch, seq) and epoch == hello_epoch:
        return {"op": "resume", "epoch": epoch, "seq": seq, "symbols": symbols}
    return {"op": "sub", "symbols": symbols}


def follows_on(held_seq: int, seq: int) -> bool:
    """True when a ``q`` follows on from the last batch applied (a whole-board client sees every
    batch); anything else on one connection, after its ``snap``, is a gap."""
    return seq == held_seq + 1


def shows_live(now: int, last_frame: int, last_quote: int) -> bool:
    """The stale marks, for a client that is open and has applied a ``snap`` or ``q`` on this
    connection: its prices are live while a frame came within STALE_AFTER_MS and a quote within
    FEED_DOWN_AFTER_MS (``last_quote``: the later of the last quote and the connection's opening)."""
    return now - last_frame <= STALE_AFTER_MS and now - last_quote <= FEED_DOWN_AFTER_MS
