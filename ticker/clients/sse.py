"""Server-Sent Events for the terminal client: the stream's parser and a small HTTP/1.1 reader.

The contract (docs/PROTOCOL.md, "Other transports"): ``GET /sse/quotes/?symbols=A,B`` answers
``text/event-stream``; each event is ``event: <t>``, ``id: <epoch>:<seq>`` and ``data: <the same
JSON frame as on the WebSocket>``; a reconnect sends ``Last-Event-ID`` to resume; comment lines
(``: …``) are heartbeats. ``EventStream`` and ``ChunkedDecoder`` are pure (tested on bytes);
``open_stream`` does the I/O on asyncio streams, so the client needs no HTTP library.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from . import rules


class SSEUnavailable(Exception):
    """The server answered the stream's URL with something other than an event stream."""


class StreamEnded(ConnectionResetError):
    """The server ended the event stream; ``retry_ms``: the reconnection time it set (its
    ``retry:`` field; a server going away sends one), None if it set none."""

    def __init__(self, retry_ms: int | None) -> None:
        super().__init__("the event stream ended" + (f" (retry in {retry_ms} ms)" if retry_ms is not None else ""))
        self.retry_ms = retry_ms


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event: its type (``message`` by default), last event id and data."""

    event: str
    id: str
    data: str


class EventStream:
    """The ``text/event-stream`` parser of the HTML standard, fed text as it arrives."""

    def __init__(self) -> None:
        self._line = ""
        self._event = ""
        self._data: list[str] = []
        self.last_id = ""
        self.retry_ms: int | None = None

    def feed(self, text: str) -> list[Event]:
        out: list[Event] = []
        text = self._line + text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._line = text.split("\n")
        for line in lines:
            if not line:
                if self._data:
                    out.append(Event(self._event or "message", self.last_id, "\n".join(self._data)))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue  # a comment: the server's heartbeat
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self.last_id = value
            elif name == "retry" and value.isdigit():
                self.retry_ms = int(value)
        return out


class ChunkedDecoder:
    """``Transfer-Encoding: chunked`` (RFC 9112 §7.1), fed bytes as they arrive."""

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # bytes of the current chunk still to come
        self._crlf = False  # a chunk's trailing CRLF is due
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while not self.done:
            if self._left:
                piece = self._buf[: self._left]
                out += piece
                self._left -= len(piece)
                self._buf = self._buf[len(piece) :]
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if len(self._buf) < 2:
                    break
                self._buf = self._buf[2:]
                self._crlf = False
            end = self._buf.find(b"\r\n")
            if end < 0:
                break
            size = int(self._buf[:end].split(b";", 1)[0], 16)
            self._buf = self._buf[end + 2 :]
            if size == 0:
                self.done = True
            self._left = size
        return bytes(out)


def stream_url(base: str, symbols: tuple[str, ...]) -> str:
    """``http(s)://host[:port]/sse/quotes/[?symbols=A,B]`` from any URL of the server."""
    parts = urlsplit(base)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme or "http")
    query = "?" + urlencode({"symbols": ",".join(symbols)}, safe=",") if symbols else ""
    return f"{scheme}://{parts.netloc}/sse/quotes/{query}"


def last_event_id(epoch: str, seq: int) -> str:
    """``Last-Event-ID`` for a stream that resumes from ``epoch:seq`` (the resume rule of
    ``rules.py``); empty when there is no position to resume from."""
    return f"{epoch}:{seq}" if rules.holds_position(epoch, seq) else ""


async def open_stream(url: str, last_event_id: str = "", timeout: float = 10.0) -> AsyncIterator[Event]:
    """Connect, check the answer is an event stream, and yield its events until it ends.

    Raises:
        SSEUnavailable: the server answered with another status or content type.
        StreamEnded: the server ended the stream (with the ``retry:`` time it set, if any).
        OSError: the connection failed or was lost.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=secure or None), timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream",
                "Cache-Control: no-cache"]
        if last_event_id:
            head.append(f"Last-Event-ID: {last_event_id}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
            raise SSEUnavailable(f"{status_line.strip()} ({headers.get('content-type', 'no content type')})")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        decoder = ChunkedDecoder() if chunked else None
        text = codecs.getincrementaldecoder("utf-8")()
        parser = EventStream()
        while True:
            data = await reader.read(65536)
            if not data:
                raise StreamEnded(parser.retry_ms)
            body = decoder.feed(data) if decoder else data
            for event in parser.feed(text.decode(body)):
                yield event
            if decoder and decoder.done:
                raise StreamEnded(parser.retry_ms)
    finally:
        writer.close()
