"""When a batch goes out: the hub's pacing, pure (no I/O, no clock: every method is given ``now``).

Policy (docs/DESIGN.md §3):

- **A hub that cannot keep up merges batches.** It measures how long a fan-out takes (wall time,
  a moving average: ``Pacer.cost``) and sends a batch only if the feed made it at least
  ``cost / MAX_DUTY`` after the last one sent (by the batches' own times, so that a backlog of
  queued batches is worked off as it is when the hub can afford it). While that is shorter
  than the feed's batch interval every batch goes out as it is;
  past it (more clients than the CPU the process gets can serve) the batches that arrive in
  between are folded together and sent as one merge, a ``snap`` with ``since`` of what changed:
  every second, third… batch, as fresh as the process can afford, with full rows (no high or
  low missed). A backlog is merged too: a batch that arrives over ``LAG_MS`` late within
  ``QUEUED_SECONDS`` of the end of the last fan-out was waiting for it (behind a pause of the
  process: a garbage collection, a burst of handshakes), and the batches queued with it go out
  as one merge, flushed ``QUEUED_SECONDS`` after the last of them. Batches that are late
  because the feed or the layer was slow arrive apart and go out as they are: merging would not
  make them fresher.
- **A delta follows on.** A batch goes out as it is (the codec's ``delta``) only when the last
  fan-out covered every batch before it; after one held back it goes out in the merge.

``now`` is always seconds on the hub's steady clock; a batch's ``ts_ms`` is the feed's time, in ms.
"""

from __future__ import annotations

from .types import NOTHING

MAX_DUTY = 0.85  # the share of the time fan-outs may take; past it, batches are merged
COST_WEIGHT = 0.25  # weight of the last fan-out in the moving average of their cost
LAG_MS = 300  # a batch this old that arrives...
QUEUED_SECONDS = 0.02  # ...this soon after a fan-out ended was queued behind it: a backlog


class Pacer:
    """Which batches go out as they are, which are held back to be merged, and when those go out."""

    __slots__ = ("cost", "ended", "held", "made_ms", "seq", "started")

    def __init__(self) -> None:
        self.cost = 0.0  # seconds a fan-out takes, a moving average
        self.held: frozenset[str] = NOTHING  # keys changed by the batches held back since the last fan-out
        self.seq = 0  # the last fan-out covered every batch up to this seq
        self.made_ms = 0  # the feed's time of the newest batch in it
        self.started = 0.0  # when it started
        self.ended = 0.0  # when it ended

    @property
    def spacing(self) -> float:
        """Seconds between two fan-outs at the least: their cost over ``MAX_DUTY``. A batch made
        sooner after the last one sent is held back, to be merged into the next."""
        return self.cost / MAX_DUTY

    def hold_back(self, changed: frozenset[str], ts_ms: int, lag_ms: float, now: float) -> bool:
        """Take a batch that changed the keys ``changed``, made by the feed at ``ts_ms`` (0: not
        known) and ``lag_ms`` old when it arrived at ``now``.

        Returns:
            True to hold it back, to be merged into the next fan-out: it was made too soon after
            the last one sent for what a fan-out costs, or it was queued in a backlog. The caller
            then has a flush sent ``flush_delay(now)`` later, unless a fan-out comes first.
        """
        self.held |= changed
        if not ts_ms:
            return False
        spacing_ms = int(self.spacing * 1000)  # batch times are in whole ms
        too_soon = spacing_ms > 0 and ts_ms - self.made_ms < spacing_ms
        return too_soon or (lag_ms > LAG_MS and now - self.ended < QUEUED_SECONDS)

    def follows_on(self, seq: int) -> bool:
        """True when the last fan-out covered every batch before ``seq``: batch ``seq`` may go out
        as it is. False after a batch held back: it goes out merged with them (``held``)."""
        return seq == self.seq + 1

    def flush_delay(self, now: float) -> float:
        """Seconds from ``now`` to wait before flushing what is held back: until a fan-out may
        start, and at least ``QUEUED_SECONDS`` (the rest of a backlog comes meanwhile)."""
        return max(QUEUED_SECONDS, self.started + self.spacing - now)

    def flush_due(self, now: float) -> bool:
        """True when what is held back may go out at ``now``: a fan-out may start, and the last one
        ended over ``QUEUED_SECONDS`` ago (no backlog is queued behind it). Else wait ``flush_delay``."""
        return now - self.ended >= QUEUED_SECONDS and now - self.started >= self.spacing

    def fanned(self, seq: int, made_ms: int, started: float, ended: float) -> float:
        """A fan-out from ``started`` to ``ended`` sent every batch up to ``seq``, the newest made
        by the feed at ``made_ms``: nothing is held back now.

        Returns:
            The seconds it took, which move the cost's average.
        """
        took = ended - started
        self.cost += (took - self.cost) * COST_WEIGHT
        self.held = NOTHING
        self.seq, self.made_ms, self.started, self.ended = seq, made_ms, started, ended
        return took
