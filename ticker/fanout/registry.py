"""Who follows what: connections grouped by identical selection. Pure, no I/O.

Connections that follow the same keys form one ``Group`` and share every frame, built once.
Only connections that may be sent to are filed here: a held connection is taken out (so the
fan-out loop never looks at it) and filed again when it is caught up. Each group also logs
when it was last sent which seq, by age, so the hub can tell which acknowledging members sat
on a frame for too long.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from .types import Selection


class Member(Protocol):
    selection: Selection


M = TypeVar("M", bound=Member)


class Group(Generic[M]):
    """The connections with one selection, and the seqs sent to them with when (newest last)."""

    __slots__ = ("log", "members")

    def __init__(self) -> None:
        self.members: set[M] = set()
        self.log: deque[tuple[int, float]] = deque()

    @property
    def sent_seq(self) -> int:
        """The seq of the last frame sent to this group (0: none yet)."""
        return self.log[-1][0] if self.log else 0

    def sent(self, seq: int, now: float) -> None:
        self.log.append((seq, now))

    def overdue(self, now: float, timeout: float) -> int:
        """The newest seq sent more than ``timeout`` seconds ago (0 if none).

        Kept by age, not by count: the log drops what is older than the newest overdue entry,
        so it holds ``timeout`` seconds of sends whatever the batch rate.
        """
        log = self.log
        while len(log) > 1 and now - log[1][1] > timeout:
            log.popleft()
        return log[0][0] if log and now - log[0][1] > timeout else 0


class Registry(Generic[M]):
    """Groups by selection; a member's ``selection`` says which group files it."""

    def __init__(self) -> None:
        self.groups: dict[Selection, Group[M]] = {}

    def file(self, member: M) -> Group[M]:
        """Put ``member`` in the group of its selection (made when missing)."""
        group = self.groups.get(member.selection)
        if group is None:
            group = self.groups[member.selection] = Group()
        group.members.add(member)
        return group

    def take_out(self, member: M) -> Group[M] | None:
        """Remove ``member`` from its group (dropped when empty); the group it was in, if any."""
        group = self.groups.get(member.selection)
        if group is None or member not in group.members:
            return None
        group.members.discard(member)
        if not group.members:
            del self.groups[member.selection]
        return group

    def items(self) -> Iterator[tuple[Selection, Group[M]]]:
        """The groups, safe to iterate while members move."""
        return iter(list(self.groups.items()))

    def __len__(self) -> int:
        return sum(len(group.members) for group in self.groups.values())
