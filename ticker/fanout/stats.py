"""What the fan-out did: counted where it happens (the hub, its holds), read by the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stats:
    """Counts and recent figures of one hub (never reset)."""

    frames: int = 0  # frames handed to live clients by the fan-out (each recipient counts)
    bytes: int = 0  # their size on the wire
    batches: int = 0  # batches fanned out
    fanout_seconds: float = 0.0  # time spent fanning them out
    lag_ms: float = 0.0  # age of the last batch when it arrived
    fanout_cost: float = 0.0  # seconds a fan-out takes (wall time), a moving average: the pacer's
    loop_late_ms: float = 0.0  # how late the event loop runs: a maximum over about the last second
    resyncs: int = 0  # snapshots reloaded after a gap or an outage
    fenced: int = 0  # batches dropped: of a feed run older than the newest heard
    conflated: int = 0  # batches held back and merged: the hub could not afford a fan-out each
    held: dict[str, int] = field(default_factory=dict)  # clients held, by reason
    caught_up: int = 0  # held clients caught up with a snap
    dropped: int = 0  # held too long: closed as too slow
    feed_gaps: int = 0  # messages the feed's source lost this run (a vendor's sequence gaps), as its last batch said
    source_down: bool = False  # the feed's source has lost the link to its vendor, as its last batch said
