"""Which keys have gone stale: their newest row is older than the feed's mark. Pure: no I/O, no
clock (``now_ms`` is passed in), so it is tested with a fake one.

The feed says how long one of its keys may go without an update (``mark_ms``, from its source:
docs/SOURCES.md), and whether its source has lost the link to its vendor (``down``: then every
key is stale, however recent its row); the hub asks, on its sweep, which keys are past it. The answer is a mapping of
each stale key to the time of its newest row, kept until the next look: ``judge`` says whether it
changed (a key went stale, or traded again), and ``of`` gives one selection's part of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .types import Selection


def part(stale: Mapping[str, int], keys: Selection) -> dict[str, int]:
    """The stale keys among ``keys`` (None: all), with their times."""
    if keys is None:
        return dict(stale)
    return {key: ms for key, ms in stale.items() if key in keys}


class Staleness:
    """The stale keys as of the last ``judge``, and the mark they were judged by (0: none yet, so
    nothing is stale) or the source's link down (every key stale)."""

    def __init__(self) -> None:
        self.mark_ms = 0
        self.down = False
        self.since: dict[str, int] = {}  # stale key -> time of its newest row (epoch ms)

    def judge(self, stamps: Iterable[tuple[str, int]], now_ms: float) -> bool:
        """Take every key that should be updating, with the time of its newest row, and keep those
        older than the mark at ``now_ms`` (all of them while the source is down).

        Returns:
            Whether the stale keys (or a stale key's time) changed since the last look.
        """
        found: dict[str, int] = {}
        if self.down:
            found = dict(stamps)
        elif self.mark_ms > 0:
            oldest = now_ms - self.mark_ms
            found = {key: ms for key, ms in stamps if ms < oldest}
        changed = found != self.since
        self.since = found
        return changed

    def of(self, keys: Selection) -> dict[str, int]:
        """The stale keys among ``keys`` (None: all), with their times."""
        return part(self.since, keys)
