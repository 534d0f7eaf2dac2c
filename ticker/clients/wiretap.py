"""What ``watch --trace`` shows: the HTTP upgrade and every WebSocket frame's header bytes.

A ``WireTap`` is fed the bytes of one direction of a connection as they pass (the client's
writes, or what it reads) and turns them into records: first the HTTP head (the upgrade request,
or the ``101 Switching Protocols`` answer), then one record per frame header (RFC 6455 §5.2:
FIN/opcode byte, mask bit and length, extended length, masking key) with the payload's size.
Payload bytes are counted and skipped, never kept. Pure: no I/O, tested on bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

OPCODES = {0x0: "CONT", 0x1: "TEXT", 0x2: "BINARY", 0x8: "CLOSE", 0x9: "PING", 0xA: "PONG"}


@dataclass(frozen=True, slots=True)
class HttpHead:
    """The HTTP request or response that opened the connection, as it was on the wire."""

    raw: bytes

    @property
    def first_line(self) -> str:
        return self.raw.split(b"\r\n", 1)[0].decode("latin-1")


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One frame's header bytes, and the size of the payload after them."""

    header: bytes
    fin: bool
    opcode: int
    masked: bool
    payload_len: int

    @property
    def kind(self) -> str:
        return OPCODES.get(self.opcode, f"0x{self.opcode:x}")


class WireTap:
    """Incremental parser of one direction: an HTTP head, then frames."""

    def __init__(self) -> None:
        self._buf = b""
        self._in_http = True
        self._skip = 0  # payload bytes still to pass over

    def feed(self, data: bytes) -> list[HttpHead | FrameHeader]:
        """Take the next bytes of the stream; return what they completed."""
        out: list[HttpHead | FrameHeader] = []
        if self._skip:
            passed = min(self._skip, len(data))
            self._skip -= passed
            data = data[passed:]
        self._buf += data
        while True:
            if self._in_http:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    return out
                out.append(HttpHead(self._buf[: end + 4]))
                self._buf = self._buf[end + 4 :]
                self._in_http = False
                continue
            frame = self._header()
            if frame is None:
                return out
            out.append(frame)
            passed = min(frame.payload_len, len(self._buf))
            self._buf = self._buf[passed:]
            self._skip = frame.payload_len - passed
            if self._skip:
                return out

    def _header(self) -> FrameHeader | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        masked = bool(buf[1] & 0x80)
        length = buf[1] & 0x7F
        size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if masked else 0)
        if len(buf) < size:
            return None
        if length == 126:
            length = int.from_bytes(buf[2:4], "big")
        elif length == 127:
            length = int.from_bytes(buf[2:10], "big")
        header = buf[:size]
        self._buf = buf[size:]
        return FrameHeader(header, bool(buf[0] & 0x80), buf[0] & 0x0F, masked, length)


def describe(record: HttpHead | FrameHeader, arrow: str) -> list[str]:
    """Lines for one record: the head line by line, or ``< TEXT  81 7e 01 2c  (4 B header, 300 B payload)``."""
    if isinstance(record, HttpHead):
        text = record.raw.decode("latin-1").rstrip("\r\n")
        return [f"{arrow} {line}" for line in text.split("\r\n")] + [arrow]
    hexed = record.header.hex(" ")
    flags = "" if record.fin else " (more follows)"
    return [
        f"{arrow} {record.kind:<6} {hexed:<30} {len(record.header):>2} B header, "
        f"{record.payload_len:>6} B payload{' masked' if record.masked else ''}{flags}"
    ]
