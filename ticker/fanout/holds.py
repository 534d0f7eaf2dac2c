"""Who is held, since when, and what they missed: the hub's held clients, pure (no I/O, no clock:
what needs the time is given ``now``, seconds on the hub's steady clock).

Policy (docs/DESIGN.md §3):

- **Nobody waits for a slow client.** ``Client.deliver`` never waits; a client that cannot
  take frames is held (``delivery.State``), sent nothing, and taken out of its group (parked
  here). When it is live again it is caught up: the catalog if that changed meanwhile, then a
  ``snap`` of the keys changed since the last frame it got.
- **Clients that ack are held when they sit on a frame** for ``ack_timeout``, and released by the
  ack that shows they read everything sent before.
- **A client held for longer than ``hold_limit`` is dropped**: nothing it asks for meanwhile is
  sent, so a client that keeps asking but never reads costs a bounded buffer for a bounded time.

``Holds`` decides; the hub acts: it sends the catch-up's frames, holds the laggards, closes the
stuck.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, Protocol, TypeVar

from .delivery import State
from .registry import Registry
from .replica import Replica
from .stats import Stats
from .types import NOTHING, Selection

ACK_TIMEOUT = 5.0  # seconds a sent frame may stay unacknowledged before the client is held
HOLD_LIMIT = 30.0  # seconds a client may stay held before it is dropped as too slow


class Member(Protocol):
    """What the holds read of a client (``delivery.Client``)."""

    selection: Selection  # what it follows: its group
    joined: int  # the seq of the snap it got when it was last (re)filed

    @property
    def state(self) -> State: ...


C = TypeVar("C", bound=Member)


class Hold(NamedTuple):
    """Where a parked client stopped: when it was parked, the epoch and seq of the last frame it
    got, and the version of the catalog it had."""

    since: float
    epoch: str
    seq: int
    catalog: int


class CatchUp(NamedTuple):
    """What a client that is live again is sent: the catalog when it missed a change, then (unless
    it follows nothing) a snap of ``keys``, the ones changed after ``since`` (None: all of them)."""

    catalog: bool
    snap: bool
    keys: Selection
    since: int | None


class Holds(Generic[C]):
    """The parked clients and what each missed, the clients owed a whole catch-up, and the last
    ack of each client that acknowledges. Parking takes a client out of the registry; a catch-up
    files it again."""

    def __init__(
        self, registry: Registry[C], replica: Replica, stats: Stats, *, ack_timeout: float = ACK_TIMEOUT,
        hold_limit: float = HOLD_LIMIT,
    ) -> None:
        self.registry = registry
        self.replica = replica
        self.stats = stats
        self.ack_timeout = ack_timeout
        self.hold_limit = hold_limit
        self.parked: dict[C, Hold] = {}
        self.whole: set[C] = set()  # owed all they follow: selection changed, or a snap not sent, while held
        self.acks: dict[C, int] = {}  # the last seq each acknowledging client acknowledged

    def __contains__(self, client: C) -> bool:
        """True when ``client`` is parked."""
        return client in self.parked

    def __len__(self) -> int:
        """How many clients are parked."""
        return len(self.parked)

    def update(self, client: C, now: float) -> bool:
        """Take a client whose state changed (from the outbox, in order): park it if it is held and
        not parked yet.

        Called before every fan-out, so a client parked here got every frame its group was sent
        up to now: its group's last seq is where its catch-up starts.

        Returns:
            True when it is live and owed a catch-up (it was parked, or owed a whole one: held
            and released between two looks): send it ``catch_up(client)``, then ``refile`` it.
        """
        state = client.state
        if state is State.CLOSING:
            return False
        if state is not State.LIVE:
            if client not in self.parked:
                self.park(client, now)
            return False
        return client in self.parked or client in self.whole

    def park(self, client: C, now: float) -> None:
        """Take a held client out of its group, noting where it stopped (and counting why)."""
        held = self.stats.held
        held[client.state.name] = held.get(client.state.name, 0) + 1
        group = self.registry.take_out(client)
        seq = max(group.sent_seq if group else 0, client.joined)
        self.parked[client] = Hold(now, self.replica.epoch, seq, self.replica.catalog_version)

    def catch_up(self, client: C) -> CatchUp:
        """What ``client``, live again, missed; its hold is forgotten. A client owed a whole catch-up
        gets all it follows; one not parked gets the catalog too (what it had is not known)."""
        hold = self.parked.pop(client, None)
        whole = client in self.whole
        self.whole.discard(client)
        self.stats.caught_up += 1
        replica, selection = self.replica, client.selection
        keys, since = selection, None
        if hold is not None and not whole:
            keys, since = replica.missed(hold.epoch, hold.seq, selection)
        catalog = hold is None or hold.catalog != replica.catalog_version
        return CatchUp(catalog, selection != NOTHING, keys, since)

    def refile(self, client: C, now: float) -> None:
        """After its catch-up: file ``client`` in its group if it is live, park it again if the
        catch-up itself held it (the frames are on their way)."""
        client.joined = self.replica.seq
        if client.state is State.LIVE:
            self.registry.file(client)
        elif client.state is not State.CLOSING:
            self.park(client, now)

    def owe_whole(self, client: C) -> None:
        """``client`` is to be caught up with all it follows: its selection changed, or a snap was
        not sent, while it was held."""
        if client.state is not State.CLOSING:
            self.whole.add(client)

    def ack(self, client: C, seq: int) -> bool:
        """``client`` applied everything up to ``seq``.

        Returns:
            True when that releases it: held for lagging, it acknowledged all it was sent before.
        """
        if client.state is State.CLOSING:
            return False
        self.acks[client] = seq
        hold = self.parked.get(client)
        return client.state is State.HELD_ACKS and hold is not None and seq >= hold.seq

    def laggards(self, now: float) -> list[C]:
        """The acknowledging clients in the registry that sat on a frame for over ``ack_timeout``:
        hold them.

        A client lags when a frame newer than both its last ack and its joining snap was sent to
        it more than ``ack_timeout`` ago: one comparison per acknowledging client.
        """
        acks, lagging = self.acks, []
        for _, group in self.registry.items():
            overdue = group.overdue(now, self.ack_timeout)
            if overdue:
                lagging += [c for c in group.members if c in acks and overdue > max(acks[c], c.joined)]
        return lagging

    def stuck(self, now: float) -> list[C]:
        """The clients held for longer than ``hold_limit``: drop them."""
        return [client for client, hold in self.parked.items() if now - hold.since > self.hold_limit]

    def forget(self, client: C) -> None:
        """``client`` left."""
        self.parked.pop(client, None)
        self.whole.discard(client)
        self.acks.pop(client, None)
