"""The client side of one WebSocket connection, built to be cheap: framing, dialects, counters
and their percentiles.

Sans-library RFC 6455 on ``asyncio.Protocol``: the opening handshake, masked client frames,
ping → pong, the closing handshake and fragmented messages. A connection counts what it
receives into a shared ``Group`` (frames, rows, bytes, a freshness histogram, seq gaps and
resyncs); what drives the connections and reads the counters is ``benchmarks.loadclient``.

Every frame costs the client CPU on the cores it shares with the server it measures, so the
common case is made cheap: a ``q`` frame that arrives alone in one read is counted without
being decoded (``V1Conn.data_received``, ``scan_quotes``), one clock read per socket read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

HIST_MS = 120_000  # freshness histogram: 1 ms buckets; later arrivals land in the last one
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class Owner(Protocol):
    """What a connection needs from the process that opened it (``loadclient.Worker``)."""

    loop: asyncio.AbstractEventLoop
    target: bytes  # the request target: path and query
    host_header: bytes
    whole_board: bool

    def watchlist(self, index: int, listed: list[dict[str, Any]]) -> list[str] | None: ...

    def lost(self, conn: Conn) -> None: ...

    def note(self, what: str) -> None: ...

    def landed(self, node: Any) -> None: ...  # the server's ``node`` from hello


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame (clients must mask, RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if not n:
        return header + mask
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return header + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def close_payload(data: bytes) -> int:
    """The status code of a close frame (1005: none given)."""
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005


class Group:
    """Counters shared by the connections of one kind (fast or slow) in one process.

    ``frames``, ``rows``, ``bytes`` and the freshness histogram cover the measure window (they
    are reset when it starts); ``gaps``, ``missed``, ``resyncs``, ``merges`` and ``closes`` cover the whole
    run from the first frame on.
    """

    __slots__ = ("bytes", "clients", "closes", "fmax", "frames", "gaps", "hist", "merges", "missed", "reorders",
                 "resyncs", "rows", "snaps")

    def __init__(self) -> None:
        self.clients = 0
        self.gaps = self.missed = self.reorders = self.resyncs = self.merges = 0
        self.closes: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.frames = self.rows = self.bytes = self.snaps = 0
        self.fmax = -1
        self.hist = [0] * HIST_MS

    def record(self, rows: list[Any], now: int) -> None:
        """Count a ``q`` frame's rows and their freshness (rows of one batch share a ``ts_ms``)."""
        n = len(rows)
        self.frames += 1
        if not n:
            return
        self.rows += n
        hist = self.hist
        if n == 1 or len({r[3] for r in rows}) == 1:
            f = now - rows[0][3]
            if f > self.fmax:
                self.fmax = f
            hist[0 if f < 0 else f if f < HIST_MS else HIST_MS - 1] += n
            return
        for r in rows:
            f = now - r[3]
            if f > self.fmax:
                self.fmax = f
            hist[0 if f < 0 else f if f < HIST_MS else HIST_MS - 1] += 1

    def record_same(self, n: int, ts: int, now: int) -> None:
        """Count a ``q`` frame of ``n`` rows that all carry ``ts``."""
        self.frames += 1
        self.rows += n
        f = now - ts
        if f > self.fmax:
            self.fmax = f
        self.hist[0 if f < 0 else f if f < HIST_MS else HIST_MS - 1] += n

    def close(self, code: int | str) -> None:
        key = str(code)
        self.closes[key] = self.closes.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        """Picklable totals; the histogram travels sparse."""
        return {
            "clients": self.clients, "frames": self.frames, "rows": self.rows, "bytes": self.bytes,
            "snaps": self.snaps, "gaps": self.gaps, "missed": self.missed, "reorders": self.reorders,
            "resyncs": self.resyncs, "merges": self.merges, "closes": dict(self.closes), "fmax": self.fmax,
            "hist": {i: c for i, c in enumerate(self.hist) if c},
        }


def percentiles(hist: dict[int, int], points: Sequence[float]) -> list[int | None]:
    """Percentiles (0–100) of a sparse 1 ms histogram."""
    total = sum(hist.values())
    if not total:
        return [None for _ in points]
    out: list[int | None] = []
    keys = sorted(hist)
    for p in points:
        rank, seen = p / 100 * total, 0
        for k in keys:
            seen += hist[k]
            if seen >= rank:
                out.append(k)
                break
    return out


def list_percentiles(values: list[float], points: Sequence[float]) -> list[float | None]:
    """Percentiles (0–100) of a list of samples, to a tenth."""
    if not values:
        return [None for _ in points]
    values = sorted(values)
    return [round(values[min(len(values) - 1, int(p / 100 * len(values)))], 1) for p in points]


def freshness(group: dict[str, Any]) -> dict[str, Any]:
    """The freshness percentiles of a ``Group.summary`` (merged or not), in ms."""
    p50, p95, p99 = percentiles(group["hist"], (50, 95, 99))
    return {"p50": p50, "p95": p95, "p99": p99, "max": group["fmax"] if group["fmax"] >= 0 else None,
            "rows": group["rows"]}


Q_PREFIX = b'{"t":"q","seq":'
Q_ROWS = b',"q":[['


def scan_quotes(payload: bytes) -> tuple[int, int, int] | None:
    """``(seq, rows, ts_ms)`` of a compact v1 ``q`` frame whose rows share one ``ts_ms``, read
    without decoding it (rows of one batch do share it); None for any other frame: decode that.

    Sound for v1: symbols cannot hold brackets or commas, and ``ts_ms`` is the last item of a row,
    so ``,<ts>]`` occurs once per row that carries it.
    """
    if not payload.startswith(Q_PREFIX) or not payload.endswith(b"]]}"):
        return None
    rows_at = payload.find(Q_ROWS, 15)
    if rows_at < 0:
        return None
    end = len(payload) - 3
    ts = payload[payload.rfind(b",", rows_at + 7, end) + 1:end]
    n = payload.count(b"],[", rows_at) + 1
    if payload.count(b"," + ts + b"]", rows_at) != n:
        return None
    try:
        return int(payload[15:rows_at]), n, int(ts)
    except ValueError:
        return None


CONNECTING, OPEN, CLOSING, CLOSED = range(4)


class Conn(asyncio.Protocol):
    """One client connection: handshake, frame parsing, control frames; subclasses read messages."""

    __slots__ = ("acked", "buf", "check_seq", "connected_at", "delivered", "frag", "group", "index", "key",
                 "last_seq", "live", "paused", "ready", "snaps", "state", "transport", "worker")

    def __init__(self, worker: Owner, index: int, group: Group) -> None:
        self.worker = worker
        self.index = index
        self.group = group
        self.state = CONNECTING
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.frag: list[bytes] | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.ready: asyncio.Future[None] = worker.loop.create_future()
        self.last_seq: int | None = None
        self.check_seq = worker.whole_board
        self.snaps = 0
        self.delivered = 0  # updates it got (q frames and merges) since the window started
        self.paused = False
        self.connected_at = 0.0
        self.acked: int | None = None  # the last seq acknowledged
        # Set by whoever waits for the first update (a storm's newcomer): resolved with its
        # perf_counter() time by the first ``snap`` or ``q``, then dropped.
        self.live: asyncio.Future[float] | None = None

    # Transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        w = self.worker
        transport.write(  # type: ignore[attr-defined]
            b"GET %b HTTP/1.1\r\nHost: %b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: 13\r\n\r\n" % (w.target, w.host_header, self.key)
        )

    def data_received(self, data: bytes) -> None:
        if self.state != OPEN:
            if self.state == CONNECTING:
                self.handshake(data)
            elif self.state == CLOSING:
                self.parse(data)
            return
        self.group.bytes += len(data)
        self.parse(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != CLOSING:
            self.group.close(1006)
            if not self.ready.done():
                self.ready.set_exception(ConnectionError("connection lost before ready"))
        if self.live is not None and not self.live.done():
            self.live.set_exception(ConnectionError("closed before an update"))
        self.state = CLOSED
        self.worker.lost(self)

    # Framing

    def handshake(self, data: bytes) -> None:
        data = self.buf + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf = data
            return
        head, rest = data[:end], data[end + 4:]
        self.buf = b""
        status = head.split(b"\r\n", 1)[0]
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        if b" 101 " not in status + b" " or accept not in head:
            self.fail(f"http {status[9:12].decode(errors='replace') or '?'}")
            return
        self.state = OPEN
        if rest:
            self.data_received(rest)

    def parse(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        now = time.time_ns() // 1_000_000
        pos, end = 0, len(data)
        while end - pos >= 2:
            b0, n = data[pos], data[pos + 1]
            if n < 126:
                start = pos + 2
            elif n == 126:
                if end - pos < 4:
                    break
                n, start = (data[pos + 2] << 8) | data[pos + 3], pos + 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, start = int.from_bytes(data[pos + 2:pos + 10], "big"), pos + 10
            else:
                self.fail("masked server frame")
                return
            stop = start + n
            if stop > end:
                break
            if b0 == 0x81:  # a final text frame: nearly every frame
                self.on_text(data[start:stop], now)
            else:
                self.on_frame(b0, data[start:stop], now)
            pos = stop
        if pos < end:
            self.buf = data[pos:]

    def on_frame(self, b0: int, payload: bytes, now: int) -> None:
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode == OP_PING:
            self.send_frame(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if self.state != CLOSING:
                self.group.close(close_payload(payload))
                self.send_frame(OP_CLOSE, payload[:2])
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"closed {close_payload(payload)} before ready"))
            self.state = CLOSING
            if self.transport:
                self.transport.close()
        elif opcode == OP_TEXT:  # first fragment of a fragmented message
            self.frag = [payload]
        elif opcode == OP_CONT and self.frag is not None:
            self.frag.append(payload)
            if fin:
                message, self.frag = b"".join(self.frag), None
                self.on_text(message, now)
        elif opcode == OP_BINARY:
            self.worker.note("binary frame")

    def send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(mask_frame(opcode, payload))

    def send_text(self, text: bytes) -> None:
        self.send_frame(OP_TEXT, text)

    def fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        else:
            self.group.close(reason)
        self.state = CLOSING
        if self.transport:
            self.transport.abort()

    def abandon(self) -> None:
        """Drop a connection that did not get ready in time (not counted as a close)."""
        self.state = CLOSING
        if self.transport:
            self.transport.abort()

    def close(self) -> None:
        """Start the closing handshake (an expected close)."""
        if self.state == OPEN:
            self.send_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
        self.state = CLOSING
        if self.paused and self.transport:
            self.transport.resume_reading()

    # Messages

    def on_text(self, payload: bytes, now: int) -> None:
        raise NotImplementedError

    def on_quotes(self, msg: dict[str, Any], now: int) -> None:
        """A decoded ``q`` payload: check its seq, count it, record its rows' freshness."""
        self.check(msg["seq"])
        self.group.record(msg["q"], now)

    def check(self, seq: int) -> None:
        """Seq continuity (whole-board connections only: a watchlist's seq may jump)."""
        if self.live is not None:
            self.went_live()
        self.delivered += 1
        last = self.last_seq
        if self.check_seq and last is not None and seq != last + 1:
            if seq > last:
                self.group.gaps += 1
                self.group.missed += seq - last - 1
            else:
                self.group.reorders += 1
        self.last_seq = seq

    def went_live(self) -> None:
        """The first update since someone started waiting for it."""
        assert self.live is not None
        if not self.live.done():
            self.live.set_result(time.perf_counter())
        self.live = None

    def ack(self) -> None:
        """Tell the server the last seq read (v1 ``ack``), if it moved since the last ack."""
        seq = self.last_seq
        if seq is not None and seq != self.acked and not self.paused:
            self.acked = seq
            self.send_text(b'{"op":"ack","seq":%d}' % seq)

    def on_snap(self, msg: dict[str, Any], now: int) -> None:
        """A ``snap``: the first one, a merge (``since`` at or before the seq held, or any ``since`` on
        a watchlist: batches merged, counted as a delivered frame with its rows' freshness) or a
        resync (anything else)."""
        if self.live is not None:
            self.went_live()
        self.snaps += 1
        group = self.group
        group.snaps += 1
        since, last = msg.get("since"), self.last_seq
        if self.snaps > 1:
            # A watchlist's seq lags (it gets no frame for batches that missed its symbols): any
            # merge follows on for it. A whole-board connection must hold ``since`` or later.
            if since is not None and (not self.check_seq or (last is not None and since <= last)):
                group.merges += 1
                self.delivered += 1
                group.record([[r[0], r[1], r[6], r[7]] for r in msg["q"]], now)
            else:
                group.resyncs += 1
        self.last_seq = msg.get("seq")


class V1Conn(Conn):
    """Protocol v1: ``hello`` → send ``sub`` → ``snap`` → ``q``…"""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        # Micro-optimization: nearly every read is exactly one ``q`` frame (a text frame of
        # 126–65535 bytes: 4-byte header). Count it here, without slicing out its payload.
        n = len(data)
        if (self.state == OPEN and not self.buf and n > 24 and data[0] == 0x81 and data[1] == 126
                and n == ((data[2] << 8) | data[3]) + 4 and data.startswith(Q_PREFIX, 4) and data.endswith(b"]]}")):
            rows_at = data.find(Q_ROWS, 19)
            if rows_at > 0:
                end = n - 3
                ts = data[data.rfind(b",", rows_at + 7, end) + 1:end]
                rows = data.count(b"],[", rows_at) + 1
                if data.count(b"," + ts + b"]", rows_at) == rows:
                    try:
                        seq, ts_ms = int(data[19:rows_at]), int(ts)
                    except ValueError:
                        pass
                    else:
                        self.group.bytes += n
                        self.check(seq)
                        self.group.record_same(rows, ts_ms, time.time_ns() // 1_000_000)
                        return
        super().data_received(data)

    def on_text(self, payload: bytes, now: int) -> None:
        scanned = scan_quotes(payload)
        if scanned is not None:  # the common case, without decoding
            seq, n, ts = scanned
            self.check(seq)
            self.group.record_same(n, ts, now)
            return
        msg = orjson.loads(payload)
        t = msg.get("t")
        if t == "q":
            self.on_quotes(msg, now)
        elif t == "snap":
            self.on_snap(msg, now)
        elif t == "hello":
            symbols = self.worker.watchlist(self.index, msg.get("symbols") or [])
            self.send_text(orjson.dumps({"op": "sub", "symbols": symbols or "*"}))
            if not self.ready.done():
                self.worker.landed(msg.get("node"))
                self.ready.set_result(None)
        elif t == "err":
            self.worker.note(f"err {msg.get('code')}")


class SocketIOConn(Conn):
    """Socket.IO 5 over Engine.IO 4 on a WebSocket: ``0{…}`` → send ``40`` → ``40{…}``, then
    ``42["hello",{…}]`` → send ``42["sub",{…}]``; events ``42["q",{…v1 q…}]``; ``2`` → ``3``."""

    __slots__ = ()

    def on_text(self, payload: bytes, now: int) -> None:
        kind = payload[:2]
        if kind == b"42":
            name, data = orjson.loads(payload[2:])[:2]
            if name == "q":
                self.on_quotes(data, now)
            elif name == "snap":
                self.on_snap(data, now)
            elif name == "hello":
                symbols = self.worker.watchlist(self.index, data.get("symbols") or [])
                self.send_text(b'42["sub",%b]' % orjson.dumps({"symbols": symbols or "*"}))
                if not self.ready.done():
                    self.worker.landed(data.get("node"))
                    self.ready.set_result(None)
        elif payload == b"2":
            self.send_text(b"3")
        elif payload[:1] == b"0":
            self.send_text(b"40")
        elif kind in (b"41", b"44") or payload[:1] == b"1":
            self.worker.note(f"socket.io {payload[:40]!r}")


DIALECTS: dict[str, type[Conn]] = {"v1": V1Conn, "socketio": SocketIOConn}
