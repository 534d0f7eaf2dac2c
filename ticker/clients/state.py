"""What a terminal client holds: the board as the server messages describe it.

Pure: no I/O, no clock of its own, so it is tested without a server. The resume rule is
``rules.py``'s, the page's too (docs/PROTOCOL.md, "Reconnect and resume").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import rules

# Indexes of a full row (`snap`) and a short row (`q`), as in ticker/protocol.py.
SYM, LAST, PREV, OPEN, HIGH, LOW, VOL, TS = range(8)
Q_SYM, Q_LAST, Q_VOL, Q_TS = range(4)


@dataclass(slots=True)
class Quote:
    """One symbol's day so far."""

    last: float
    prev: float
    open: float
    high: float
    low: float
    volume: int
    ts: int
    direction: int = 0  # sign of the last price's last move

    @property
    def change(self) -> float:
        return self.last - self.prev

    @property
    def pct(self) -> float:
        return (self.last - self.prev) / self.prev * 100 if self.prev else 0.0


@dataclass
class TableState:
    """The board as the server's messages describe it: listed symbols, their quotes, epoch and seq,
    and which symbols the server calls stale (``stale``: symbol -> time of its newest row, epoch
    ms; replaced whole by each ``stale``, cleared by a ``hello``).

    ``apply`` takes one decoded server message and returns True when it was an update (a ``snap``
    or a ``q``), the unit ``--count`` counts.
    """

    wanted: tuple[str, ...] = ()  # the symbols asked for; empty: the whole board
    epoch: str = ""
    seq: int = 0
    node: str = ""
    names: dict[str, str] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    quotes: dict[str, Quote] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    updates: int = 0
    errors: list[str] = field(default_factory=list)

    def apply(self, msg: dict[str, Any]) -> bool:
        kind = msg.get("t")
        if kind == "hello":
            epoch = str(msg.get("epoch", ""))
            self.seq = rules.seq_after_hello(self.epoch, self.seq, epoch)
            self.epoch = epoch
            self.node = str(msg.get("node", ""))
            self._symbols(msg.get("symbols") or [])
            self.stale = {}  # a new connection: its server says again which are stale
            return False
        if kind == "stale":
            self._stale(msg.get("s"))
            return False
        if kind == "sym":
            self._symbols(msg.get("symbols") or [])
            return False
        if kind == "snap":
            if msg.get("epoch"):
                self.epoch = str(msg["epoch"])
            for r in msg.get("q", []):
                self.quotes[r[SYM]] = Quote(r[LAST], r[PREV], r[OPEN], r[HIGH], r[LOW], r[VOL], r[TS])
            if "stale" in msg:  # polled: the stale symbols ride on the snap
                self._stale(msg["stale"])
            self._seq(msg)
            return True
        if kind == "q":
            for r in msg.get("q", []):
                quote = self.quotes.get(r[Q_SYM])
                if quote is None:  # not in our snapshot (added since): it opened at the last price
                    quote = self.quotes[r[Q_SYM]] = Quote(r[Q_LAST], r[Q_LAST], r[Q_LAST], r[Q_LAST], r[Q_LAST], 0, 0)
                price = r[Q_LAST]
                quote.direction = (price > quote.last) - (price < quote.last)
                quote.last = price
                quote.high = max(quote.high, price)
                quote.low = min(quote.low, price)
                quote.volume = r[Q_VOL]
                quote.ts = r[Q_TS]
            self._seq(msg)
            return True
        if kind == "err":
            self.errors.append(f"{msg.get('code')}: {msg.get('msg')}")
        return False

    def _seq(self, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if isinstance(seq, int):
            self.seq = seq
        self.updates += 1

    def _stale(self, since: Any) -> None:
        if isinstance(since, dict):
            self.stale = {str(sym): int(ms) for sym, ms in since.items() if isinstance(ms, int)}

    def _symbols(self, entries: list[dict[str, Any]]) -> None:
        self.names = {e["s"]: e.get("name", "") for e in entries}
        self.paused = {e["s"] for e in entries if e.get("paused")}
        for sym in list(self.quotes):
            if sym not in self.names:
                del self.quotes[sym]

    def subscription(self) -> list[str] | str:
        """What to ask for: the symbols named, or ``"*"``."""
        return list(self.wanted) if self.wanted else "*"

    def opening(self) -> dict[str, Any]:
        """The first client frame after the ``hello`` just applied: ``resume`` when we hold a
        position in its epoch, else ``sub``."""
        return rules.opening(self.epoch, self.seq, self.epoch, self.subscription())

    def rows(self) -> list[tuple[str, Quote | None]]:
        """The rows to show, in the order asked for (or ticker order), listed symbols only."""
        order = [s for s in self.wanted if s in self.names] if self.wanted else sorted(self.names)
        return [(sym, self.quotes.get(sym)) for sym in order]
