"""Wire protocol v1: sans-I/O parsing, validation and encoding (docs/PROTOCOL.md).

This module does no I/O and imports neither Django, Channels nor asyncio: the consumer
feeds it the text of each frame and sends what it gives back. Every rule of the protocol
that can be checked without a connection is checked here, so tests need no server.

Client → server frames carry an ``op``; server → client frames carry a ``t``.
Quote rows are positional arrays, not objects, to keep frames small:

- full row (``snap``):  ``[sym, last, prev_close, open, high, low, volume, ts_ms]``
- short row (``q``):    ``[sym, last, volume, ts_ms]``
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

VERSION = 1

# Limits, announced to every client in ``hello``.
MAX_FRAME_BYTES = 4096
MAX_SYMBOLS = 100
RATE_PER_SECOND = 10.0
RATE_BURST = 20
FLOOD_BUDGET = 50  # frames refused within one FLOOD_WINDOW before the connection is closed
FLOOD_WINDOW = 10.0  # seconds

# Close codes (docs/PROTOCOL.md). An application behind daphne may only send 1000 and
# 3000-4999 (autobahn refuses the rest), so the ticker's own reasons are 4000+; the 1xxx codes
# come from the servers themselves (1009 for a frame over the limit they are given, 1007 for
# invalid UTF-8, 1002 for a protocol error, 1006 when the connection is lost).
WS_1008_POLICY = 1008  # what v1 servers sent for a flood before 4008 (clients treat it as 4008)
WS_1009_MESSAGE_TOO_BIG = 1009  # from the server: a frame over max_frame_bytes
WS_4008_POLICY = 4008  # flood: refused frames past the budget
WS_4009_TOO_BIG = 4009  # a frame over max_frame_bytes that reached the application
WS_4013_TOO_SLOW = 4013  # the client stopped reading: held past the server's limit
# The server is going away (SIGTERM, a deploy): reconnect at once, then resume. The one 1xxx code
# the ticker sends itself; under daphne it goes past autobahn's check (ticker/fanout/fastpath.py).
WS_1012_SERVICE_RESTART = 1012
RESTART_JITTER_MS = 500  # clients told to reconnect at once spread over [0, this) ms

# Error codes sent in ``err`` frames; the connection stays open after each of them.
ERR_BAD_REQUEST = "bad_request"
ERR_UNKNOWN_OP = "unknown_op"
ERR_UNKNOWN_SYMBOL = "unknown_symbol"
ERR_TOO_MANY_SYMBOLS = "too_many_symbols"
ERR_RATE_LIMITED = "rate_limited"
ERR_TOO_BIG = "too_big"  # not sent: the connection is closed with 1009

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,11}$")
ALL = "*"

# Indexes into a full row.
SYM, LAST, PREV_CLOSE, OPEN, HIGH, LOW, VOLUME, TS = range(8)

Row = list[Any]  # a full row, see the module docstring


class ProtocolError(Exception):
    """A client frame broke a rule.

    When ``close_code`` is None, send ``encode_err(exc.code, str(exc))`` and keep going;
    otherwise close the connection with that code.
    """

    def __init__(self, code: str, msg: str, close_code: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Add symbols to the connection; ``symbols`` is None for the whole board ("*")."""

    symbols: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Remove symbols from the connection; ``symbols`` is None for all of them."""

    symbols: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Resume:
    """Re-subscribe after a reconnect and continue from ``(epoch, seq)`` where possible."""

    epoch: str
    seq: int
    symbols: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Ack:
    """The client has applied every frame up to ``seq`` (send about once a second while frames
    arrive). Opting in lets the server pause a client that stopped reading instead of
    buffering for it, and resync it with a ``snap`` once it has caught up."""

    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Ask for a ``pong`` carrying the same ``id``."""

    id: int | float | str | None


ClientMessage = Subscribe | Unsubscribe | Resume | Ack | Ping


def _symbols(value: Any) -> tuple[str, ...] | None:
    """Validate a ``symbols`` field: "*" or a list of ticker strings (upper-cased, de-duplicated,
    then counted: at most ``MAX_SYMBOLS`` different ones)."""
    if value == ALL:
        return None
    if not isinstance(value, list) or not value:
        raise ProtocolError(ERR_BAD_REQUEST, 'symbols must be "*" or a non-empty list of strings')
    out: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            raise ProtocolError(ERR_BAD_REQUEST, "symbols must be strings")
        sym = item.strip().upper()
        if not SYMBOL_RE.match(sym):
            raise ProtocolError(ERR_UNKNOWN_SYMBOL, f"not a ticker: {item[:16]!r}")
        out[sym] = None
        if len(out) > MAX_SYMBOLS:
            raise ProtocolError(ERR_TOO_MANY_SYMBOLS, f"at most {MAX_SYMBOLS} symbols per connection")
    return tuple(out)


def parse_symbols_param(raw: str) -> tuple[str, ...] | None:
    """A ``symbols`` query parameter (``AAPL,MSFT``; empty or ``*`` for the whole board), checked
    as a ``sub`` frame's list is.

    Raises:
        ProtocolError: a name that is not a ticker, or too many of them.
    """
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return None if not names or names == [ALL] else _symbols(names)


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Parse and validate one client frame.

    Args:
        data: the text of a WebSocket text frame.

    Returns:
        One of ``Subscribe``, ``Unsubscribe``, ``Resume``, ``Ack`` or ``Ping``.

    Raises:
        ProtocolError: the frame is not valid JSON, not an object, has an unknown ``op``
            or a field of the wrong type (answer with ``err`` and go on), or is larger than
            ``MAX_FRAME_BYTES`` (close with ``exc.close_code``; the servers are told the same
            limit and close with 1009 before the frame gets here).
    """
    if len(data if isinstance(data, bytes) else data.encode()) > MAX_FRAME_BYTES:
        raise ProtocolError(ERR_TOO_BIG, f"frame larger than {MAX_FRAME_BYTES} bytes", WS_4009_TOO_BIG)
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError(ERR_BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError(ERR_BAD_REQUEST, "frame must be a JSON object")
    op = msg.get("op")
    if op == "sub":
        return Subscribe(_symbols(msg.get("symbols")))
    if op == "unsub":
        return Unsubscribe(_symbols(msg.get("symbols")))
    if op == "ack":
        seq = msg.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ProtocolError(ERR_BAD_REQUEST, "ack needs a non-negative int seq")
        return Ack(seq)
    if op == "ping":
        ping_id = msg.get("id")
        if not (ping_id is None or isinstance(ping_id, str | int | float)) or isinstance(ping_id, bool):
            raise ProtocolError(ERR_BAD_REQUEST, "ping id must be a number or a string")
        return Ping(ping_id)
    if op == "resume":
        epoch, seq = msg.get("epoch"), msg.get("seq")
        if not isinstance(epoch, str) or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ProtocolError(ERR_BAD_REQUEST, "resume needs a string epoch and a non-negative int seq")
        return Resume(epoch, seq, _symbols(msg.get("symbols", ALL)))
    if not isinstance(op, str):
        raise ProtocolError(ERR_BAD_REQUEST, 'frame needs an "op" string')
    raise ProtocolError(ERR_UNKNOWN_OP, f"unknown op: {op[:32]!r}")


class TokenBucket:
    """Per-connection rate limit: ``rate`` frames a second with bursts of ``burst``, and a budget
    of refused frames: more than ``budget`` refused within ``window`` seconds is a flood, however
    the client paces them.

    Time is passed in, so the bucket is deterministic and needs no clock.
    """

    __slots__ = ("budget", "burst", "rate", "refused", "since", "stamp", "tokens", "window")

    def __init__(
        self, rate: float = RATE_PER_SECOND, burst: int = RATE_BURST, now: float = 0.0,
        budget: int = FLOOD_BUDGET, window: float = FLOOD_WINDOW,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.budget = budget
        self.window = window
        self.tokens = float(burst)
        self.stamp = now
        self.refused = 0  # frames refused since ``since``
        self.since = now  # start of the current window

    def take(self, now: float) -> bool:
        """Spend one token; False means the frame must be refused."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if now - self.since >= self.window:
            self.since, self.refused = now, 0
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        return False

    @property
    def flooding(self) -> bool:
        """True once the client spent its budget of refused frames in this window (close 4008)."""
        return self.refused > self.budget

    @property
    def first_refusal(self) -> bool:
        """True for the first refused frame of a window: the one that gets ``rate_limited``."""
        return self.refused == 1


# Encoding. Every encoder returns the text of one frame.


def _text(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def limits(ack_ms: int) -> dict[str, Any]:
    """The limits announced in ``hello``; ``ack_ms``: how often to ``ack`` (0: don't)."""
    return {
        "max_symbols": MAX_SYMBOLS,
        "max_frame_bytes": MAX_FRAME_BYTES,
        "rate": RATE_PER_SECOND,
        "burst": RATE_BURST,
        "flood_budget": FLOOD_BUDGET,
        "flood_window_s": FLOOD_WINDOW,
        "ack_ms": ack_ms,
    }


OPEN_MARKET: Mapping[str, Any] = {"state": "open", "reason": ""}


def encode_hello(
    epoch: str, seq: int, node: str, symbols: Sequence[Mapping[str, Any]], ack_ms: int,
    market: Mapping[str, Any] = OPEN_MARKET, source: str = "",
) -> str:
    """The first frame on every connection: version, feed epoch, current seq, the symbol list,
    the market's state, where the prices come from ("" before the feed's first batch)."""
    return _text(
        {"t": "hello", "v": VERSION, "epoch": epoch, "seq": seq, "node": node,
         "symbols": list(symbols), "market": dict(market or OPEN_MARKET), "limits": limits(ack_ms),
         "source": source}
    )


def full_row(row: Row) -> bytes:
    """A ``snap`` row, encoded once and shared by every ``snap`` that carries it until it changes.

    Kept as a copy: orjson ≥ 3.12 hands back its whole write buffer (about 4 KiB behind each
    small result), which a cache of rows would hold for as long as they stay unchanged. The
    ``q`` fragments (``short_row``) live for one fan-out and are not copied: the copy costs more
    than the buffer does there.
    """
    return memoryview(orjson.dumps(row)).tobytes()


def encode_snap(epoch: str, seq: int, rows: Iterable[bytes], since: int | None = None) -> str:
    """Full state of the given symbols (pre-encoded by ``full_row``: joined, not re-encoded) as of
    batch ``seq`` of ``epoch``; the client replaces what it had for them (and takes ``epoch``: a
    resync may follow a feed restart). With ``since``: the rows are every one that changed after
    batch ``since``, batches merged, not a resync."""
    merged = b"" if since is None else b'"since":%d,' % since
    return (b'{"t":"snap","epoch":%b,"seq":%d,%b"q":[%b]}' % (orjson.dumps(epoch), seq, merged,
                                                              b",".join(rows))).decode()


def short_row(row: Row) -> bytes:
    """The pre-encoded ``q`` fragment of a full row: ``[sym,last,volume,ts_ms]``."""
    return orjson.dumps([row[SYM], row[LAST], row[VOLUME], row[TS]])


def encode_quotes(seq: int, fragments: Iterable[bytes]) -> str:
    """A coalesced batch from pre-encoded fragments (see ``short_row``): joined, not re-encoded."""
    return (b'{"t":"q","seq":%d,"q":[%b]}' % (seq, b",".join(fragments))).decode()


def encode_symbols(
    symbols: Sequence[Mapping[str, Any]], market: Mapping[str, Any] = OPEN_MARKET, source: str = "",
) -> str:
    """The symbol list, the market's state or the feed's source changed (admin add, pause, delete,
    halt; a feed that starts on another source, or its first batch): all three, whole."""
    return _text({"t": "sym", "symbols": list(symbols), "market": dict(market or OPEN_MARKET), "source": source})


def encode_stale(stale: Mapping[str, int]) -> str:
    """The connection's symbols that have gone stale, each with the time of its newest row (epoch
    ms): the whole set, which replaces the last one (empty: every symbol is live)."""
    return _text({"t": "stale", "s": dict(stale)})


def encode_err(code: str, msg: str) -> str:
    """A recoverable error; the connection stays open."""
    return _text({"t": "err", "code": code, "msg": msg})


def unknown_symbols(symbols: Sequence[str]) -> ProtocolError:
    """The error for symbols that are not listed (the known ones of the same request still apply):
    the first ten named, each cut to 16 characters."""
    return ProtocolError(ERR_UNKNOWN_SYMBOL, "unknown symbol(s): " + ", ".join(s[:16] for s in symbols[:10]))


def encode_pong(ping_id: int | float | str | None) -> str:
    """The answer to ``ping``."""
    return _text({"t": "pong", "id": ping_id})


class QuoteCodec:
    """The fan-out's codec for quotes (``ticker.fanout.types.Codec`` and ``Marks``): this module's
    encoders. A catalog's entries are the symbols; its status, the market's state; a row's time,
    its ``ts_ms``."""

    hello_kind = "hello"
    snap_kind = "snap"
    delta_kind = "q"
    catalog_kind = "sym"
    stale_kind = "stale"

    def __init__(self, node: str) -> None:
        self.node = node

    def hello(self, epoch: str, seq: int, catalog: Listing, ack_ms: int, source: str = "") -> str:
        return encode_hello(epoch, seq, self.node, catalog.entries, ack_ms, catalog.status, source)

    def catalog(self, catalog: Listing, source: str = "") -> str:
        return encode_symbols(catalog.entries, catalog.status, source)

    def stamp(self, row: Row) -> int:
        return int(row[TS])

    snap = staticmethod(encode_snap)
    row = staticmethod(full_row)
    fragment = staticmethod(short_row)
    delta = staticmethod(encode_quotes)
    stale = staticmethod(encode_stale)


class Listing(Protocol):
    """What the codec reads of a catalog (``ticker.fanout.types.Catalog``)."""

    @property
    def entries(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def status(self) -> Mapping[str, Any]: ...
