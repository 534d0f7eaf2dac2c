"""Clients that show the board as the page does, cheaply, and check the ticker's safety property.

The page (``ticker/static/ticker/status.js``) decides when the prices it shows are *live* (drawn
normally) and when they are *stale* (greyed), by the client rules that ``ticker/clients/rules.py``
states for every Python client (``tests/test_client_rules.py`` holds them equal to the page's).
``Board`` is that decision as a state machine with no I/O, plus what the page does not do: it
remembers how old the newest price it holds is, so a caller can ask at any moment "would the page
show old prices as fresh now?". ``PageClient``
drives one ``Board`` over real WebSocket connections (``benchmarks.wsclient``'s framing: RFC 6455
by hand, ``q`` frames read without decoding), reconnecting and resuming like the page; ``Pool``
holds many of them on one event loop and checks every client on every frame and every 250 ms.

**What "fresh" means for a client.** As on the page:

- The client shows its prices as live exactly when its socket is open, it has applied a ``snap``
  or ``q`` on this connection, a frame of any kind arrived within the last 5 s
  (``STALE_AFTER_MS``), and a quote within the last 4 s (``FEED_DOWN_AFTER_MS``: the page's
  "feed down", for a whole board that trades). Otherwise they are stale: disconnected,
  connecting, waiting for the snapshot, quiet for 5 s, or its feed silent for 4 s. Like the
  page it pings a line quiet for 2 s (a ``pong`` is a frame, so it keeps a quiet line from
  going stale, not a silent feed), drops a line quiet for 15 s, drops a connection with
  no snapshot 10 s after it opened, reconnects with full-jitter backoff (0.5 s doubling to 15 s,
  reset by a connection that stayed up 5 s; the full cap after a close that needs a fix: 1008,
  1009, 4008, 4009), resumes with the epoch and seq it holds, and acks every
  ``hello.limits.ack_ms`` when its seq moved.
- Its **freshness mark** is the newest ``ts`` (a row's last field: when the feed published that
  price, epoch ms) among the rows it has applied. Every published batch changes at least one
  row and a ``snap`` carries full rows, so this is the time of the newest batch its board
  reflects: every price shown is the latest the feed had published at that time. (The age of
  one row is no measure: a symbol that did not trade for 10 s, or a paused one, still shows
  its latest price.)
- **Safety:** whenever the client shows its prices as live, ``now - mark <= FRESH_MS`` (5 s, the
  page's own stale threshold). Checked after every frame and every 250 ms (the page redraws
  its state on every frame and every 250 ms); a check that fails is a *violation*, and a run of
  failing checks is one violation episode, recorded with the worst age seen.
- **Live again** after a fault at time F: the first moment after F when the client shows live
  prices that include a batch published after F (mark >= F). A client the fault did not touch
  is live again with the next batch (about 0.1 s).
- **Seq continuity:** on one connection, after its ``snap``, every ``q`` has ``seq`` one above
  the one before (a whole-board client sees every batch); anything else is a *gap*.
- **One feed run at a time:** a ``snap`` never takes the client to an epoch older than the one
  it holds (``ticker.epochs``): otherwise an *epoch back*, the sign of two feeds interleaved.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from ticker.clients import rules
from ticker.epochs import older

from .wsclient import OP_CLOSE, Conn, Group, close_payload, scan_quotes

TICK_SECONDS = 0.25  # the page's status timer
FRESH_MS = rules.STALE_AFTER_MS  # the freshness mark's limit while the board shows live prices
CONNECT_TIMEOUT = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Board:
    """What the page shows, as state (no I/O). Times are wall-clock epoch milliseconds, the
    clock of the feed's ``ts``. See the module docstring for the rules."""

    __slots__ = ("ack_ms", "acked_at", "acked_seq", "connected", "epoch", "last_frame", "last_ping", "last_quote",
                 "mark", "opened_at", "resumable", "seq", "synced")

    def __init__(self) -> None:
        self.connected = False  # the socket is open
        self.synced = False  # a snap or q applied on this connection
        self.epoch = ""
        self.seq = 0
        self.mark = 0  # newest ts applied (epoch ms)
        self.resumable = False
        self.opened_at = self.last_frame = self.last_ping = self.last_quote = 0
        self.ack_ms = 0
        self.acked_at, self.acked_seq = 0, -1

    def opened(self, now: int) -> None:
        self.connected, self.synced = True, False
        self.opened_at = self.last_frame = self.last_ping = now

    def closed(self) -> None:
        self.connected = self.synced = False

    def frame(self, now: int) -> None:
        """Any message arrived (hello, snap, q, sym, err, pong)."""
        self.last_frame = now

    def hello(self, epoch: str, ack_ms: int) -> dict[str, Any]:
        """The subscription to send: ``resume`` from what it holds, or ``sub``."""
        self.ack_ms = ack_ms
        self.acked_at, self.acked_seq = 0, -1
        self.seq = rules.seq_after_hello(self.epoch, self.seq, epoch)
        held = self.epoch if self.resumable else ""
        self.epoch = epoch
        self.resumable = True
        return rules.opening(held, self.seq, epoch, "*")

    def snap(self, epoch: str, seq: int, newest: int) -> None:
        """A snapshot applied: ``newest`` is its newest row's ts (0: no rows)."""
        if epoch and epoch != self.epoch:
            self.epoch, self.mark = epoch, newest
        else:
            self.mark = max(self.mark, newest)
        self.seq = seq
        self.synced = True

    def quotes(self, seq: int, newest: int) -> tuple[int, int] | None:
        """A ``q`` applied; returns ``(held, got)`` when its seq does not follow on (a gap)."""
        gap = (self.seq, seq) if self.synced and not rules.follows_on(self.seq, seq) else None
        self.seq = seq
        self.mark = max(self.mark, newest)
        self.synced = True
        return gap

    def live(self, now: int) -> bool:
        """The page draws its prices as live (not greyed)."""
        return (self.connected and self.synced
                and rules.shows_live(now, self.last_frame, max(self.last_quote, self.opened_at)))

    def stale_shown_as_fresh(self, now: int) -> int:
        """The age of the freshness mark if the page shows it live although older than ``FRESH_MS``; else 0."""
        age = now - self.mark
        return age if age > FRESH_MS and self.live(now) else 0

    def due(self, now: int) -> tuple[str, ...]:
        """What the page's 250 ms timer does now: ``("reconnect",)``, or ``"ping"`` and/or ``"ack"``."""
        if not self.connected:
            return ()
        quiet = now - self.last_frame
        if quiet > rules.DEAD_AFTER_MS or (not self.synced and now - self.opened_at > rules.SYNC_TIMEOUT_MS):
            return ("reconnect",)
        actions: tuple[str, ...] = ()
        if quiet > rules.PING_AFTER_MS and now - self.last_ping > rules.PING_AFTER_MS:
            self.last_ping = now
            actions = ("ping",)
        if self.ack_ms and self.synced and self.seq != self.acked_seq and now - self.acked_at >= self.ack_ms:
            self.acked_at, self.acked_seq = now, self.seq
            actions = (*actions, "ack")
        return actions


@dataclass
class Fault:
    """Something done to the cluster at ``at_ms`` (epoch ms); what the clients made of it."""

    n: int
    kind: str
    target: str
    at_ms: int
    pid: int = 0
    restarted_s: float | None = None
    back_ms: int | None = None  # what it took away was back this long after (a Redis failover)
    live_again_ms: dict[int, int] = field(default_factory=dict)  # client index -> ms after the fault


@dataclass
class Episode:
    """One run of failed safety checks on one client."""

    client: int
    start_ms: int
    worst_age_ms: int


class PageConn(Conn):
    """One connection of a ``PageClient``: frames go to its ``Board`` (see ``PageClient.message``)."""

    __slots__ = ("client", "close_code")

    def __init__(self, pool: Pool, client: PageClient) -> None:
        super().__init__(pool, client.index, pool.group)
        self.client = client
        self.close_code = 0

    def on_text(self, payload: bytes, now: int) -> None:
        self.client.message(self, payload, now)

    def on_frame(self, b0: int, payload: bytes, now: int) -> None:
        if b0 & 0x0F == OP_CLOSE and self.close_code == 0:
            self.close_code = close_payload(payload)
        super().on_frame(b0, payload, now)


class PageClient:
    """One page: a ``Board`` kept current over successive connections. What went wrong is kept
    in its ``Pool`` (events with their time, so a run can attribute them to a fault)."""

    __slots__ = ("board", "closed", "conn", "failures", "index", "last_close", "node", "pool", "reload", "stopping",
                 "synced_at", "task", "violating")

    def __init__(self, pool: Pool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.board = Board()
        self.conn: PageConn | None = None
        self.closed: asyncio.Future[None] | None = None
        self.failures = 0
        self.last_close = 0  # the close code the next wait answers (0: none, or a failed connect)
        self.node = ""
        self.stopping = False
        self.reload = False  # the next connection starts as a new page (``sub``), not a resume
        self.violating: Episode | None = None
        self.synced_at = 0  # when the first snapshot arrived (0: not yet)
        self.task: asyncio.Task[None] | None = None

    # Connections

    async def run(self) -> None:
        while not self.stopping:
            opened = await self.connect()
            if opened is not None:
                await opened
            if self.stopping:
                return
            await asyncio.sleep(self.backoff())

    async def connect(self) -> asyncio.Future[None] | None:
        """Open a connection and wait for its hello; the future resolves when it ends."""
        pool = self.pool
        if self.reload:
            self.board, self.reload = Board(), False
        conn = self.conn = PageConn(pool, self)
        self.closed = pool.loop.create_future()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await pool.loop.sock_connect(sock, pool.addr)
                await pool.loop.create_connection(lambda: conn, sock=sock)
                await conn.ready
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and self.stopping:
                conn.abandon()
                raise
            reason = str(exc) if type(exc) is ConnectionError else "timeout" if isinstance(exc, TimeoutError) else (
                type(exc).__name__)
            pool.event("connect failed: " + reason, self.index)
            conn.abandon()
            if conn.transport is None:
                sock.close()
            self.board.closed()
            self.conn = None
            return None
        return self.closed

    def lost(self, conn: PageConn) -> None:
        """The connection ended (closed, reset or given up)."""
        if conn is not self.conn:
            return
        self.conn = None
        if self.board.connected and now_ms() - self.board.opened_at >= rules.STABLE_AFTER_MS:
            self.failures = 0  # it stayed up: the page's stable timer
        self.failures = rules.failures_after_close(conn.close_code, self.failures)
        self.last_close = conn.close_code
        if self.board.connected and not self.stopping:  # before hello, ``connect`` records the failure
            self.pool.event(f"closed {conn.close_code or 1006}", self.index)
        self.board.closed()
        self.end_episode()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def backoff(self) -> float:
        """The wait before the next attempt, in seconds (``rules.backoff_delay``); counts one failure."""
        delay = rules.reconnect_delay(self.last_close, self.failures)
        self.last_close = 0
        self.failures += 1
        return delay

    def drop(self, reason: str) -> None:
        """Give the connection up (the page's liveness rule) without a closing handshake."""
        conn = self.conn
        if conn is not None and conn.transport is not None:
            self.pool.event(reason, self.index)
            conn.transport.abort()

    async def close(self, timeout: float = 2.0) -> None:
        """Close the connection with 1000, as a page being left does; reset it after ``timeout``."""
        conn, closed = self.conn, self.closed
        if conn is None or closed is None:
            return
        conn.close()
        try:
            await asyncio.wait_for(asyncio.shield(closed), timeout)
        except TimeoutError:
            if conn.transport is not None:
                conn.transport.abort()

    async def stop(self) -> None:
        self.stopping = True
        await self.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    # Frames

    def message(self, conn: PageConn, payload: bytes, now: int) -> None:
        """A text message on ``conn``: apply it to the board as the page would, then check."""
        board = self.board
        pool = self.pool
        board.frame(now)
        scanned = scan_quotes(payload)
        if scanned is not None:  # nearly every frame: a q whose rows share one ts
            seq, n, ts = scanned
            self.apply_quotes(seq, ts, now)
            pool.group.record_same(n, ts, now)
            return
        msg = orjson.loads(payload)
        kind = msg.get("t")
        if kind == "q":
            rows = msg.get("q") or []
            self.apply_quotes(msg["seq"], max((r[3] for r in rows), default=0), now)
            pool.group.record(rows, now)
        elif kind == "snap":
            rows = msg.get("q") or []
            epoch = msg.get("epoch", "")
            if epoch and older(epoch, board.epoch):
                pool.epochs_back.append((self.index, now, board.epoch, epoch))
            board.snap(epoch, msg["seq"], max((r[7] for r in rows), default=0))
            if not self.synced_at:
                self.synced_at = now
            pool.group.snaps += 1
            self.applied(now)
        elif kind == "hello":
            self.node = str(msg.get("node", ""))
            board.opened(now)
            board.frame(now)
            limits = msg.get("limits") or {}
            conn.send_text(orjson.dumps(board.hello(msg.get("epoch", ""), int(limits.get("ack_ms") or 0))))
            if not conn.ready.done():
                conn.ready.set_result(None)
        elif kind == "err":
            pool.event(f"err {msg.get('code')}", self.index)
        self.check(now)

    def apply_quotes(self, seq: int, newest: int, now: int) -> None:
        board = self.board
        if not board.synced:
            self.pool.event("q before snap", self.index)
        gap = board.quotes(seq, newest)
        if gap is not None:
            self.pool.gap(self.index, now, gap)
        self.applied(now)

    def applied(self, now: int) -> None:
        """A snap or q was applied (the feed is alive): the client may be live again after the
        latest faults."""
        self.board.last_quote = now
        faults = self.pool.faults
        mark = self.board.mark
        for fault in reversed(faults):
            if fault.at_ms > mark:
                continue
            if self.index in fault.live_again_ms:
                break
            fault.live_again_ms[self.index] = now - fault.at_ms
        self.check(now)

    def check(self, now: int) -> None:
        """The safety property, now."""
        age = self.board.stale_shown_as_fresh(now)
        if age:
            if self.violating is None:
                self.violating = Episode(self.index, now, age)
                self.pool.episodes.append(self.violating)
            elif age > self.violating.worst_age_ms:
                self.violating.worst_age_ms = age
        elif self.violating is not None:
            self.end_episode()

    def end_episode(self) -> None:
        self.violating = None

    def tick(self, now: int) -> None:
        """The page's 250 ms timer: liveness, ping, ack; then the safety check."""
        actions = self.board.due(now)
        conn = self.conn
        if actions == ("reconnect",):
            self.drop("no snapshot after 10 s" if not self.board.synced else "no frame for 15 s")
        elif actions and conn is not None:
            for action in actions:
                if action == "ping":
                    self.pool.pings += 1
                    conn.send_text(b'{"op":"ping","id":%d}' % self.pool.pings)
                else:
                    conn.send_text(b'{"op":"ack","seq":%d}' % self.board.seq)
        self.check(now)


class Pool:
    """Many ``PageClient``\\ s on one event loop, behind one URL (``ws://host:port/path``).

    Also the ``wsclient.Owner`` of their connections. What went wrong is recorded with its time:
    ``events`` (connect failures, closes and their codes, ``err`` codes, liveness drops),
    ``gaps``, and safety ``episodes``; ``group`` counts frames and the freshness of every row.
    """

    whole_board = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode()
        self.host_header = parts.netloc.encode()
        self.loop = asyncio.get_running_loop()
        self.clients: list[PageClient] = []
        self.group = Group()
        self.faults: list[Fault] = []
        self.events: list[tuple[int, int, str]] = []  # (at ms, client, what)
        self.gaps: list[tuple[int, int, int, int]] = []  # (client, at ms, held seq, got seq)
        self.epochs_back: list[tuple[int, int, str, str]] = []  # (client, at ms, held epoch, older one got)
        self.episodes: list[Episode] = []
        self.pings = 0
        self.ticker: asyncio.Task[None] | None = None

    # wsclient.Owner

    def watchlist(self, index: int, listed: list[dict[str, Any]]) -> list[str] | None:
        return None

    def lost(self, conn: Conn) -> None:
        if isinstance(conn, PageConn):
            conn.client.lost(conn)

    def note(self, what: str) -> None:
        self.event(what)

    def landed(self, node: Any) -> None:
        pass

    # Records

    def event(self, what: str, client: int = -1) -> None:
        self.events.append((now_ms(), client, what))

    def gap(self, client: int, at: int, gap: tuple[int, int]) -> None:
        self.gaps.append((client, at, *gap))

    # Clients

    def add(self, n: int) -> list[PageClient]:
        added = []
        for _ in range(n):
            client = PageClient(self, len(self.clients))
            client.task = asyncio.create_task(client.run())
            self.clients.append(client)
            added.append(client)
        if self.ticker is None:
            self.ticker = asyncio.create_task(self.tick())
        return added

    async def connect(self, n: int, rate: float = 200.0, timeout: float = 60.0) -> float:
        """Start ``n`` clients, ``rate`` a second, and wait until each holds a snapshot; seconds taken."""
        began = time.monotonic()
        for i in range(n):
            self.add(1)
            due = began + (i + 1) / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
        deadline = began + timeout
        while not all(c.synced_at for c in self.clients):
            if time.monotonic() > deadline:
                missing = sum(1 for c in self.clients if not c.synced_at)
                raise TimeoutError(f"{missing} of {len(self.clients)} clients got no snapshot within {timeout:.0f} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = now_ms()
            for client in self.clients:
                client.tick(now)

    def live(self) -> int:
        now = now_ms()
        return sum(1 for c in self.clients if c.board.live(now))

    async def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
            await asyncio.gather(self.ticker, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self.clients))
