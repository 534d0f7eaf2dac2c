"""A real Server-Sent Events client on a plain socket: reads events as a browser's EventSource
does (``event``, ``id``, ``data`` fields; comments), or stops reading on purpose."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Event:
    kind: str  # "" for a comment
    id: str
    data: str
    retry: str = ""  # the block's ``retry:`` field (the server's reconnection time, ms)

    def json(self) -> dict:
        return json.loads(self.data)


class SseClient:
    def __init__(self, url: str, last_event_id: str = "", recv_buffer: int = 0, timeout: float = 10.0,
                 source: str = "") -> None:
        parts = urlsplit(url)
        self.sock = socket.socket()
        if recv_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        if source:  # another loopback address (127.0.0.2): another client address to the server
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
                          f"{extra}\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.decode().partition(":") for line in head.split(b"\r\n")[1:])}
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.body = b""  # de-chunked bytes not yet parsed into events

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("stream ended")
        return chunk

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _more(self) -> None:
        """Move more of the response body into ``self.body``."""
        if not self.chunked:
            self.body += self.buffer or self._recv()
            self.buffer = b""
            return
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            raise ConnectionError("stream ended")
        while len(self.buffer) < size + 2:
            self.buffer += self._recv()
        self.body += self.buffer[:size]
        self.buffer = self.buffer[size + 2:]

    def next(self) -> Event:
        """The next event or comment."""
        while b"\n\n" not in self.body:
            self._more()
        block, self.body = self.body.split(b"\n\n", 1)
        fields: dict[str, list[str]] = {}
        comment = False
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                comment = True
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if comment and not fields:
            return Event("", "", "")
        return Event(fields.get("event", ["message"])[0], fields.get("id", [""])[0], "\n".join(fields.get("data", [])),
                     fields.get("retry", [""])[0])

    def until(self, predicate, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next()
            if predicate(event):
                return event
            if time.monotonic() > deadline:
                raise TimeoutError("no such event")

    def close(self) -> None:
        self.sock.close()
