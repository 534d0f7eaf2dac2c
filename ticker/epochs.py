"""Feed runs and their order: the epoch is the fencing token of the feed lease. Pure, no I/O.

Every run of a feed (each time a process takes the lease) has an epoch, ``TERM-RANDOM``:
``TERM`` is the wall clock in milliseconds, in hex, raised above the last run the store
recorded when that one's clock was ahead; ``RANDOM`` is 24 random bits, so two runs never share
an epoch, even if a failover rolled the store back to before one of them. Epochs are ordered by
term, then by the whole string: a run started later has the greater epoch.

Why an order and not a counter: Redis replicates asynchronously, so a failover can lose the
newest renewal of the lease (and a counter's newest increment with it). A standby may then take
the lease while the old feed still thinks it holds it; a counter could hand the new run the old
one's number again. Wall-clock terms do not go back with the data (one host's clock, or clocks
kept by NTP within far less than the lease's time to live), and the random part makes each
epoch unique. The rule, applied where batches land:

- the quote store writes a batch only for the lease's holder, and never one of a run older
  than the run it recorded (``ticker.layer.store``);
- a hub never applies, nor resyncs to, a run older than the newest it has heard while that
  one is heard from (``ticker.fanout.replica``): a stale feed's batches cannot be interleaved
  into the newer stream, on the same connection or on another server.

Clients need none of this: to them an epoch is an opaque name (docs/PROTOCOL.md).
"""

from __future__ import annotations

import re
import secrets
import time

_TERM = re.compile(r"[0-9a-f]+")


def term(epoch: str) -> int:
    """The term of ``epoch``: its leading hex digits as a number (0 when there are none)."""
    match = _TERM.match(epoch)
    return int(match.group(), 16) if match else 0


def order(epoch: str) -> tuple[int, str]:
    """What epochs sort by: the term, then the whole string."""
    return term(epoch), epoch


def older(epoch: str, than: str) -> bool:
    """Whether run ``epoch`` started before run ``than`` ("" is older than any run)."""
    return order(epoch) < order(than)


def new_epoch(after: str = "", now_ms: int | None = None) -> str:
    """The epoch of a new run: the clock's milliseconds (``now_ms``), or one more than the term of
    ``after`` (the newest run known) if that is not below it; and 24 random bits."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{max(now, term(after) + 1):x}-{secrets.token_hex(3)}"
