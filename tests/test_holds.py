"""The holds: who is parked, since when, what they missed, who lags on acks, who is dropped.

Time is passed in: ``now`` here is a number the test chooses, no clock is read and nothing sleeps.
The clients are plain objects with the three fields the holds read.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ticker.fanout.delivery import State
from ticker.fanout.holds import ACK_TIMEOUT, HOLD_LIMIT, CatchUp, Hold, Holds
from ticker.fanout.registry import Registry
from ticker.fanout.replica import Replica
from ticker.fanout.stats import Stats
from ticker.fanout.types import NOTHING, Batch, Catalog, Selection

KEYS = frozenset({"a", "b", "c"})


class Conn:
    """A client as the holds see it."""

    def __init__(self, selection: Selection = None) -> None:
        self.selection = selection
        self.joined = 0
        self.state = State.LIVE


@dataclass
class Snapshot:
    epoch: str
    seq: int
    rows: dict
    updated_ms: int = 1


@pytest.fixture
def world():
    """Holds over a replica at batch 3 of epoch ``e`` and an empty registry."""
    replica = Replica()
    replica.load(Snapshot("e", 3, {key: [key, 0] for key in KEYS}))
    replica.set_catalog(Catalog(KEYS, ()))
    registry: Registry[Conn] = Registry()
    return Holds(registry, replica, Stats()), registry, replica


def apply(replica: Replica, seq: int, *keys: str) -> None:
    replica.accept(Batch("e", seq, [[key, seq] for key in keys]))


def filed(registry: Registry[Conn], selection: Selection = None, sent: int = 3, at: float = 100.0) -> Conn:
    """A live client in its group, which was last sent batch ``sent`` at ``at``."""
    conn = Conn(selection)
    registry.file(conn).sent(sent, at)
    return conn


def parked(holds: Holds, registry: Registry[Conn], selection: Selection = None) -> Conn:
    """A client filed, then held for its buffer and parked at 100 s."""
    conn = filed(registry, selection)
    conn.state = State.HELD_BUFFER
    holds.update(conn, 100.0)
    return conn


def test_a_held_client_is_parked_with_where_it_stopped(world):
    holds, registry, _ = world
    conn = filed(registry)
    conn.state = State.HELD_BUFFER
    assert holds.update(conn, 100.5) is False
    assert holds.parked == {conn: Hold(since=100.5, epoch="e", seq=3, catalog=1)}
    assert registry.groups == {} and conn in holds and len(holds) == 1
    assert holds.stats.held == {"HELD_BUFFER": 1}
    holds.update(conn, 101.0)  # seen again while still held: parked once, since the first look
    assert holds.parked[conn].since == 100.5 and holds.stats.held == {"HELD_BUFFER": 1}


def test_a_client_parked_before_its_group_got_anything_starts_from_the_snap_it_joined_with(world):
    holds, registry, _ = world
    conn = Conn(frozenset({"a"}))
    conn.joined = 3
    registry.file(conn)
    conn.state = State.HELD_SEND
    holds.update(conn, 100.0)
    assert holds.parked[conn].seq == 3


def test_a_live_client_that_was_never_parked_is_owed_nothing(world):
    holds, registry, _ = world
    conn = filed(registry)
    assert holds.update(conn, 100.0) is False and registry.groups[None].members == {conn}


def test_a_client_live_again_gets_what_changed_among_its_keys_since_its_last_frame(world):
    holds, registry, replica = world
    conn = parked(holds, registry, frozenset({"a", "b"}))
    apply(replica, 4, "a", "c")
    apply(replica, 5, "c")
    conn.state = State.LIVE
    assert holds.update(conn, 100.2) is True
    assert holds.catch_up(conn) == CatchUp(catalog=False, snap=True, keys=frozenset({"a"}), since=3)
    assert conn not in holds and holds.stats.caught_up == 1
    holds.refile(conn, 100.2)
    assert registry.groups[frozenset({"a", "b"})].members == {conn} and conn.joined == 5


def test_a_client_that_missed_a_catalog_change_gets_the_catalog_first(world):
    holds, registry, replica = world
    conn = parked(holds, registry)
    replica.set_catalog(Catalog(frozenset({"a"}), ()))
    conn.state = State.LIVE
    assert holds.catch_up(conn).catalog is True


def test_a_client_parked_longer_than_the_replica_remembers_gets_all_it_follows(world):
    holds, registry, replica = world
    conn = parked(holds, registry)
    replica.load(Snapshot("e2", 1, {"a": ["a", 1]}))  # a new epoch meanwhile
    conn.state = State.LIVE
    assert holds.catch_up(conn) == CatchUp(catalog=False, snap=True, keys=None, since=None)


def test_a_client_that_changed_its_selection_while_held_gets_all_of_it(world):
    holds, registry, replica = world
    conn = parked(holds, registry, frozenset({"a"}))
    apply(replica, 4, "a")
    conn.selection = frozenset({"a", "b"})
    holds.owe_whole(conn)
    conn.state = State.LIVE
    holds.update(conn, 100.1)
    assert holds.catch_up(conn) == CatchUp(catalog=False, snap=True, keys=frozenset({"a", "b"}), since=None)
    assert holds.whole == set()


def test_a_client_held_and_released_between_two_looks_is_caught_up_only_when_a_snap_was_lost(world):
    holds, registry, _ = world
    conn = filed(registry)
    assert holds.update(conn, 100.0) is False  # held and live again before the look: nothing lost
    holds.owe_whole(conn)  # a snap it was not sent while it was held
    assert holds.update(conn, 100.0) is True
    assert holds.catch_up(conn) == CatchUp(catalog=True, snap=True, keys=None, since=None)


def test_a_client_following_nothing_gets_no_snap(world):
    holds, registry, _ = world
    conn = filed(registry, NOTHING)
    conn.state = State.HELD_BUFFER
    holds.update(conn, 100.0)
    conn.state = State.LIVE
    assert holds.catch_up(conn).snap is False


def test_a_client_held_again_by_its_catch_up_is_parked_again_from_the_catch_up(world):
    holds, registry, replica = world
    conn = parked(holds, registry)
    apply(replica, 4, "a")
    conn.state = State.LIVE
    holds.catch_up(conn)
    conn.state = State.HELD_SEND  # the catch-up's own send was suspended
    holds.refile(conn, 100.3)
    assert holds.parked[conn] == Hold(since=100.3, epoch="e", seq=4, catalog=1) and registry.groups == {}


def test_only_an_ack_that_covers_what_it_was_sent_releases_a_client_held_for_acks(world):
    holds, registry, _ = world
    conn = filed(registry)
    conn.state = State.HELD_ACKS
    holds.update(conn, 100.0)
    assert holds.ack(conn, 2) is False
    assert holds.ack(conn, 3) is True
    conn.state = State.HELD_BUFFER
    assert holds.ack(conn, 9) is False  # held for its buffer: an ack does not release it


def test_an_acknowledging_client_that_sits_on_a_frame_past_the_timeout_lags(world):
    holds, registry, _ = world
    slow, fast, silent = filed(registry, at=100.0), Conn(None), Conn(None)
    for conn in (fast, silent):
        registry.file(conn)
    holds.ack(slow, 2)
    holds.ack(fast, 3)
    assert holds.laggards(100.0 + ACK_TIMEOUT / 2) == []
    assert holds.laggards(100.0 + ACK_TIMEOUT + 0.1) == [slow]  # `silent` never acks: never lags


def test_a_client_that_joined_after_the_overdue_frame_does_not_lag(world):
    holds, registry, _ = world
    conn = filed(registry, at=100.0)
    conn.joined = 3  # its snap had batch 3
    holds.ack(conn, 0)
    assert holds.laggards(100.0 + ACK_TIMEOUT + 1) == []


def test_a_client_held_past_the_limit_is_stuck(world):
    holds, registry, _ = world
    conn = parked(holds, registry)
    assert holds.stuck(100.0 + HOLD_LIMIT / 2) == []
    assert holds.stuck(100.0 + HOLD_LIMIT + 0.1) == [conn]


def test_nothing_is_kept_for_a_client_that_left(world):
    holds, registry, _ = world
    conn = filed(registry)
    holds.ack(conn, 1)
    conn.state = State.HELD_ACKS
    holds.update(conn, 100.0)
    holds.owe_whole(conn)
    holds.forget(conn)
    conn.state = State.CLOSING
    holds.ack(conn, 2)  # late calls for a closed client keep nothing either
    holds.owe_whole(conn)
    assert holds.update(conn, 101.0) is False
    assert (holds.parked, holds.whole, holds.acks) == ({}, set(), {})
