"""The fan-out's vocabulary: what comes in (events, snapshots), what goes out (a codec's frames).

A *row* is a list whose first item is its key (a ticker, for quotes); the fan-out never looks
further into it. A *selection* is what one connection follows: a frozenset of keys, or
``None`` for every key (the whole board).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

Row = list[Any]
Selection = frozenset[str] | None
NOTHING: frozenset[str] = frozenset()
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Batch:
    """Batch ``seq`` of feed run ``epoch``: the changed rows, the removed keys, when it was made;
    how long the feed's keys may go without an update (``stale_ms``, 0: not said) and how many
    messages its source has lost this run (``gaps``: a vendor's sequence gaps); where its prices
    come from (``source``, "": not said); whether its source has lost the link to its vendor
    (``down``: then every key is stale, whatever its time)."""

    epoch: str
    seq: int
    rows: Sequence[Row]
    removed: Sequence[str] = ()
    ts_ms: int = 0
    stale_ms: int = 0
    gaps: int = 0
    source: str = ""
    down: bool = False


@dataclass(frozen=True, slots=True)
class Catalog:
    """The list of keys a client may follow, with what the codec says of each (``entries``), and
    of the whole (``status``: for quotes, whether the market is open or halted, and why), and the
    keys not expected to update (``quiet``: paused, or the market halted), never judged stale."""

    keys: frozenset[str]
    entries: Sequence[Mapping[str, Any]]
    status: Mapping[str, Any] = field(default_factory=dict)
    quiet: frozenset[str] = NOTHING


@dataclass(frozen=True, slots=True)
class Rejoined:
    """The hub's layer subscription was (re)established: whatever was sent meanwhile is lost."""


Event = Batch | Catalog | Rejoined


class Drop(Enum):
    """Why the hub let a connection go (what its ``drop`` is told)."""

    TOO_SLOW = "held past the hold limit: it stopped reading"
    RESTART = "the server is going away: reconnect at once"


class Snapshot(Protocol):
    """A consistent copy of the feed's state, as a store gives it."""

    @property
    def epoch(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def rows(self) -> Mapping[str, Row]: ...
    @property
    def updated_ms(self) -> int: ...


class Clock(Protocol):
    """Where the hub reads the time: the ``time`` module, or a test's fake."""

    def monotonic(self) -> float:
        """Seconds on a steady clock: when fan-outs start and end, when clients were parked."""

    def time(self) -> float:
        """Seconds since the Unix epoch: what the feed's batch times are compared with."""


class Codec(Protocol):
    """Turns the fan-out's state into the text of wire frames; the application supplies it, with
    the kind of each frame it makes (an event stream's ``event:`` name): the fan-out knows no
    word of the protocol."""

    hello_kind: str
    snap_kind: str
    delta_kind: str
    catalog_kind: str

    def hello(self, epoch: str, seq: int, catalog: Catalog, ack_ms: int, source: str) -> str:
        """The first frame of every connection."""

    def row(self, row: Row) -> bytes:
        """One row of a ``snap``, encoded once and shared by every ``snap`` until the row changes."""

    def snap(self, epoch: str, seq: int, rows: Iterable[bytes], since: int | None = None) -> str:
        """Full state of some keys, joined from their encoded rows; with ``since``, of every one
        changed after that seq (a merge)."""

    def fragment(self, row: Row) -> bytes:
        """One row of an incremental frame, encoded once per batch and shared by every frame."""

    def delta(self, seq: int, fragments: Iterable[bytes]) -> str:
        """An incremental frame joined from fragments."""

    def catalog(self, catalog: Catalog, source: str) -> str:
        """The catalog, or where the feed's prices come from (``source``), changed."""


class Marks(Protocol):
    """How the application tells stale keys (``ticker.fanout.staleness``): the time of a row, and
    the frame that lists a connection's stale keys (of kind ``stale_kind``)."""

    stale_kind: str

    def stamp(self, row: Row) -> int:
        """When the row was last updated (epoch ms)."""

    def stale(self, stale: Mapping[str, int]) -> str:
        """The stale keys of one connection, each with the time of its newest row: the whole set."""
