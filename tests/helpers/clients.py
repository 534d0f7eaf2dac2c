"""Real clients: a protocol v1 WebSocket client, one that reconnects and resumes like the page,
and small HTTP helpers."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import websockets

from ticker.clients import rules


class Ws:
    """A real WebSocket client speaking protocol v1."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.hello: dict = {}

    @classmethod
    async def open(cls, url: str) -> Ws:
        # max_queue=None: frames it has not read yet are kept, and reading goes on. With the library's
        # bounded queue a whole-board client that stops reading stops reading the socket too, and
        # its close then waits out close_timeout (10 s) for a close frame stuck behind its quotes.
        ws = cls(await websockets.connect(url, open_timeout=10, max_queue=None))
        ws.hello = await ws.recv()
        assert ws.hello["t"] == "hello"
        return ws

    async def recv(self, timeout: float = 5.0) -> dict:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))

    async def send(self, obj: dict) -> None:
        await self.conn.send(json.dumps(obj))

    async def until(self, predicate, timeout: float = 5.0) -> dict:
        """The first frame that satisfies ``predicate``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if predicate(frame):
                return frame

    async def close(self) -> None:
        await self.conn.close()


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:  # a proxy's own error page
            return exc.code, {"body": body.decode(errors="replace")}


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


async def wait_resynced(client: Reconnecting) -> None:
    await client.dropped.wait()  # cleared `synced` first
    await client.synced.wait()


class Reconnecting:
    """A protocol v1 client that behaves like the page, by the client rules (ticker/clients/rules.py):
    whole board, and on any disconnect it reconnects with exponential backoff and full jitter
    (0.5 s doubling to 15 s; the full cap after a close that needs a fix; at once, within a short
    jitter, after 1012), then sends ``resume``
    with the epoch and seq it holds. Its backoff starts over once it holds a snapshot again. It
    records what happened."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.epoch, self.seq, self.node = "", 0, ""
        self.failures = 0
        self.synced = asyncio.Event()  # holds a snapshot on the current connection
        self.dropped = asyncio.Event()  # lost a connection at least once
        self.new_epoch = asyncio.Event()  # a snap moved it onto another epoch
        self.synced_at = 0.0
        self.dropped_at: list[float] = []
        self.drops: list[str] = []  # why each connection ended
        self.closes: list[int] = []  # the close code of each connection that opened (1006: none came)
        self.syncs: list[tuple[str, str, dict]] = []  # (op sent, node, the snap that answered it)
        self.gaps: list[tuple[int, int]] = []
        self.errors: list[dict] = []
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def run(self) -> None:
        while True:
            ws = None
            try:
                async with websockets.connect(self.url, open_timeout=5, close_timeout=1) as ws:
                    await self.session(ws)
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.drops.append(f"{type(exc).__name__}: {exc}")
            else:
                self.drops.append("closed")
            self.synced.clear()
            self.dropped_at.append(time.monotonic())
            self.dropped.set()
            code = ws.close_code if ws else None
            if code is not None:
                self.closes.append(code)
            self.failures = rules.failures_after_close(code, self.failures)
            await asyncio.sleep(rules.reconnect_delay(code, self.failures))
            self.failures += 1

    async def session(self, ws) -> None:
        hello = json.loads(await ws.recv())
        self.node = hello["node"]
        opening = rules.opening(self.epoch, self.seq, hello["epoch"], "*")
        op = opening["op"]
        await ws.send(json.dumps(opening))
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame["t"]
            if kind == "snap":
                if self.epoch and frame["epoch"] != self.epoch:
                    self.new_epoch.set()
                self.epoch, self.seq = frame["epoch"], frame["seq"]
                if not self.synced.is_set():
                    self.syncs.append((op, self.node, frame))
                    self.synced_at = time.monotonic()
                    self.failures = 0
                    self.synced.set()
            elif kind == "q" and self.synced.is_set():
                if not rules.follows_on(self.seq, frame["seq"]):
                    self.gaps.append((self.seq, frame["seq"]))
                self.seq = frame["seq"]
            elif kind == "err":
                self.errors.append(frame)


async def connect_all(url: str, n: int, timeout: float = 30.0) -> list[Reconnecting]:
    clients = [Reconnecting(url) for _ in range(n)]
    for i, client in enumerate(clients):
        client.start()
        if i % 25 == 24:
            await asyncio.sleep(0.05)  # let handshakes finish rather than queue 200 at once
    await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), timeout)
    return clients


async def stop_all(clients: list[Reconnecting]) -> None:
    await asyncio.gather(*(c.stop() for c in clients))
