"""The hub's copy of the feed's state: pure, no I/O.

A ``Replica`` holds the epoch, the last applied seq, the latest row of every key, which keys
the recent batches changed, and the catalog. ``accept(batch)`` says what to do with a batch:
skip it (already applied), drop it (fenced: a run older than the newest heard, see
``ticker.epochs``), resync (it does not follow on), or apply it (done, and the keys it changed are
returned); ``load`` refuses a snapshot of such an older run the same way. ``changed_since``
answers "what did a client that last saw ``seq`` miss?" (``missed``: of what it follows), which
serves a ``resume`` and the catch-up of a client that was held.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable

from ..epochs import older
from .types import NOTHING, Batch, Catalog, Row, Selection, Snapshot

RECENT_BATCHES = 600  # one minute at 10 batches a second
# A newer run not heard from for this long (by its feed's clock) no longer fences older ones: it
# is presumed gone (two faults at once: its whole history lost from Redis while an older feed
# that never saw it went on). The board shows its prices as stale long before.
SILENT_MS = 10_000


class Step(enum.Enum):
    """What ``Replica.accept`` made of a batch."""

    SKIP = "skip"  # already in the state (a batch the store had before it arrived)
    FENCED = "fenced"  # of a run older than the newest heard: a feed that lost its lease
    RESYNC = "resync"  # a gap or a new epoch: reload a snapshot
    APPLIED = "applied"


class Replica:
    """Epoch, seq, rows, recent changes and catalog of one feed, as this process knows them."""

    def __init__(self, recent: int = RECENT_BATCHES) -> None:
        self.epoch = ""
        self.seq = 0
        self.rows: dict[str, Row] = {}
        self.updated_ms = 0
        self.recent: deque[tuple[int, frozenset[str]]] = deque(maxlen=recent)  # keys changed per batch
        self.catalog = Catalog(NOTHING, ())
        self.catalog_version = 0  # rises with each catalog change
        self.source = ""  # where the feed's prices come from, as its batches say (part of what a catalog frame says)
        self.fence = ""  # the newest run heard (its batches or the store's snapshot)
        self.fence_ms = 0  # when it was last heard, by its feed's clock

    def load(self, snap: Snapshot) -> bool:
        """Replace everything with a snapshot; nothing recent is known after it. False (and
        nothing changed) when the snapshot is of a run older than the newest heard: a store that
        has not seen the newer run (a Redis the failover left behind)."""
        if self.fenced(snap.epoch, snap.updated_ms):
            return False
        self.heard(snap.epoch, snap.updated_ms)
        self.epoch, self.seq, self.updated_ms = snap.epoch, snap.seq, snap.updated_ms
        self.rows = {key: list(row) for key, row in snap.rows.items()}
        self.recent.clear()
        return True

    def fenced(self, epoch: str, at_ms: int) -> bool:
        """Whether what run ``epoch`` made at ``at_ms`` is fenced off: that run is older than the
        newest heard, and the newest was heard within ``SILENT_MS`` of it."""
        return older(epoch, self.fence) and at_ms - self.fence_ms < SILENT_MS

    def heard(self, epoch: str, at_ms: int) -> None:
        """Run ``epoch`` (not fenced) said something made at ``at_ms``: it is the newest now."""
        if epoch != self.fence:
            self.fence, self.fence_ms = epoch, at_ms
        else:
            self.fence_ms = max(self.fence_ms, at_ms)

    def accept(self, batch: Batch) -> tuple[Step, frozenset[str]]:
        """Apply ``batch`` if it follows the last one.

        Returns:
            The step taken and, when ``APPLIED``, the keys the batch changed.
        """
        if batch.epoch == self.epoch and batch.seq <= self.seq:
            return Step.SKIP, NOTHING
        if self.fenced(batch.epoch, batch.ts_ms):
            return Step.FENCED, NOTHING
        self.heard(batch.epoch, batch.ts_ms)
        if batch.source and batch.source != self.source:  # said by every batch, a resyncing one too
            self.source = batch.source
            self.catalog_version += 1  # clients are told it with the catalog (a held one on catch-up)
        if batch.epoch != self.epoch or batch.seq != self.seq + 1:
            return Step.RESYNC, NOTHING
        self.seq = batch.seq
        for row in batch.rows:
            self.rows[row[0]] = row
        for key in batch.removed:
            self.rows.pop(key, None)
        if batch.ts_ms:
            self.updated_ms = batch.ts_ms
        changed = frozenset(row[0] for row in batch.rows)
        self.recent.append((batch.seq, changed))
        return Step.APPLIED, changed

    def changed_since(self, epoch: str, seq: int) -> frozenset[str] | None:
        """The keys changed after batch ``seq`` of ``epoch``; None when that is not known (another
        epoch, a seq from the future, or older than the recent batches kept): send everything."""
        oldest = self.recent[0][0] if self.recent else self.seq + 1
        if epoch != self.epoch or seq > self.seq or seq + 1 < oldest:
            return None
        changed: set[str] = set()
        for batch_seq, keys in reversed(self.recent):
            if batch_seq <= seq:
                break
            changed |= keys
        return frozenset(changed)

    def missed(self, epoch: str, seq: int, keys: Selection) -> tuple[Selection, int | None]:
        """What a client that follows ``keys`` and last saw batch ``seq`` of ``epoch`` needs: those
        changed since, with ``seq`` (their snap is a merge), or when that is not known all of
        ``keys``, with None."""
        changed = self.changed_since(epoch, seq)
        if changed is None:
            return keys, None
        return (changed if keys is None else changed & keys), seq

    def select(self, keys: Selection) -> list[Row]:
        """The rows of ``keys`` (None: all), in key order."""
        if keys is None:
            return [self.rows[key] for key in sorted(self.rows)]
        return [self.rows[key] for key in sorted(keys) if key in self.rows]

    def set_catalog(self, catalog: Catalog) -> bool:
        """Take a new catalog; False when it is the one already held."""
        if catalog == self.catalog:
            return False
        self.catalog = catalog
        self.catalog_version += 1
        return True

    def unknown(self, keys: Iterable[str]) -> list[str]:
        """The keys not in the catalog, sorted."""
        return sorted(set(keys) - self.catalog.keys)
