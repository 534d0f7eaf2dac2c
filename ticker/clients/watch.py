"""``manage.py watch``: the quote stream in a terminal, on the ``websockets`` library.

One ``Watcher`` runs sessions until ``--count`` updates have arrived (or forever): each session
connects, reads ``hello``, sends ``sub`` (or ``resume`` with the epoch and seq it holds, so that a
reconnect gets only what it missed), and applies every server message to a ``TableState``. A lost
connection is retried after a backoff with full jitter (0.5 s doubling to 15 s, each wait drawn
uniformly below the cap), and a close that needs a fix (4008, 4009) waits the full cap and says
so: the page's rules, stated once in ``rules.py``.

Output: a live ``rich`` table; ``--json``, each server message on a line of its own (for
scripts); ``--trace``, the upgrade request, the ``101 Switching Protocols`` answer and each
frame's header bytes beside its payload size, from the bytes themselves (``wiretap.WireTap`` on
the connection's reads and writes: the library's debug log names frames but not their header
bytes).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidURI, WebSocketException

from . import sse
from .rules import PROTOCOL_VERSION, STABLE_AFTER_MS, OnClose, failures_after_close, on_close, reconnect_delay
from .state import Quote, TableState
from .wiretap import WireTap, describe

DEFAULT_URL = "ws://127.0.0.1:8000/ws/quotes/"
REFRESH_PER_SECOND = 4


class Done(Exception):
    """``--count`` updates have arrived."""


@dataclass(frozen=True)
class WatchOptions:
    url: str = DEFAULT_URL
    symbols: tuple[str, ...] = ()
    json: bool = False
    count: int | None = None
    trace: bool = False
    transport: str = "ws"


def socket_url(base: str) -> str:
    """``ws(s)://host[:port]/ws/quotes/?v=1`` from a ws, wss, http or https URL of the server."""
    parts = urlsplit(base if "://" in base else f"ws://{base}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws/quotes/"
    query = parts.query or f"v={PROTOCOL_VERSION}"
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def tracing_connection(emit: Callable[[str], None]) -> type[ClientConnection]:
    """A ``ClientConnection`` that shows what crosses the wire, both ways, as it passes."""

    class _Tap:
        """The connection's transport, with its writes shown first."""

        def __init__(self, transport: asyncio.Transport, tap: WireTap) -> None:
            self._transport = transport
            self._tap = tap

        def write(self, data: bytes) -> None:
            for record in self._tap.feed(bytes(data)):
                for line in describe(record, ">"):
                    emit(line)
            self._transport.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._transport, name)

    class TracingConnection(ClientConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._tap_in = WireTap()
            self.transport = _Tap(self.transport, WireTap())  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            for record in self._tap_in.feed(data):
                for line in describe(record, "<"):
                    emit(line)
            super().data_received(data)

    return TracingConnection


class Watcher:
    """Sessions on the quote stream until ``count`` updates (or until cancelled)."""

    def __init__(self, opts: WatchOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.opts = opts
        self.out = out
        self.err = err
        self.state = TableState(wanted=tuple(s.upper() for s in opts.symbols))
        self.live: Live | None = None
        self.status = "connecting"
        self.close_code: int | None = None  # how the last WebSocket session closed (None: lost, or SSE)
        # With --json the trace goes to stderr, so that stdout stays one JSON message a line.
        self.trace_to = err if opts.json else out

    async def run(self) -> None:
        """Connect, reconnect after a backoff, and return once ``count`` updates have arrived."""
        table = not self.opts.json and not self.opts.trace
        if table:
            # Django's OutputWrapper around stdout hides the terminal from rich: give it the file.
            console = Console(file=getattr(self.out, "_out", self.out))
            self.live = Live(get_renderable=self.render, console=console, refresh_per_second=REFRESH_PER_SECOND)
            self.live.start()
        failures = 0
        try:
            while True:
                started = asyncio.get_running_loop().time()
                self.close_code = None
                retry_ms: int | None = None  # an event stream's retry: hint
                try:
                    if self.opts.transport == "sse":
                        await self.sse_session()
                    else:
                        await self.ws_session()
                    reason = "the server closed the connection"
                except Done:
                    return
                except BrokenPipeError:
                    return  # our reader went away (`watch --json | head`): nothing more to do
                except sse.StreamEnded as exc:
                    retry_ms = exc.retry_ms
                    reason = str(exc)
                except (TimeoutError, OSError, WebSocketException, sse.SSEUnavailable) as exc:
                    if isinstance(exc, InvalidURI):
                        raise
                    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if asyncio.get_running_loop().time() - started > STABLE_AFTER_MS / 1000:
                    failures = 0
                rule = on_close(self.close_code)
                if rule is not OnClose.BACKOFF:
                    reason += f" (close {self.close_code}: {rule.value})"
                failures = failures_after_close(self.close_code, failures)
                delay = reconnect_delay(self.close_code, failures, retry_ms=retry_ms)
                failures += 1
                self.status = f"reconnecting in {delay:.1f} s"
                self.err.write(f"watch: {reason}; reconnecting in {delay:.1f} s (attempt {failures})\n")
                self.err.flush()
                await asyncio.sleep(delay)
        finally:
            if self.live is not None:
                self.live.stop()

    def emit_trace(self, line: str) -> None:
        self.trace_to.write(line + "\n")
        self.trace_to.flush()

    async def ws_session(self) -> None:
        url = socket_url(self.opts.url)
        factory = tracing_connection(self.emit_trace) if self.opts.trace else None
        async with connect(url, compression=None, open_timeout=10, max_size=2**22,
                           create_connection=factory) as ws:
            self.status = f"connected to {url}"
            try:
                await self.ws_messages(ws)
            finally:
                self.close_code = ws.close_code

    async def ws_messages(self, ws: ClientConnection) -> None:
        """Answer ``hello``, fall back to ``sub`` when a ``resume`` is refused, apply the rest."""
        pending = ""
        async for raw in ws:
            msg = self.receive(raw)
            if msg is None:
                continue
            if msg.get("t") == "hello":
                opening = self.state.opening()
                pending = opening["op"]
                await self.send(ws, opening)
            elif msg.get("t") == "err" and pending == "resume":
                pending = "sub"  # a refused resume: a plain subscription and its snapshot
                await self.send(ws, {"op": "sub", "symbols": self.state.subscription()})
            elif msg.get("t") in ("snap", "q"):
                pending = ""
                self.status = "live"
            self.check_done()

    async def send(self, ws: ClientConnection, obj: dict[str, Any]) -> None:
        text = json.dumps(obj, separators=(",", ":"))
        await ws.send(text)
        if self.opts.trace:
            self.emit_trace(f"  {text}")

    async def sse_session(self) -> None:
        url = sse.stream_url(self.opts.url, self.state.wanted)
        last_id = sse.last_event_id(self.state.epoch, self.state.seq)
        if self.opts.trace:
            self.emit_trace(f"> GET {url}" + (f"  (Last-Event-ID: {last_id})" if last_id else ""))
        async for event in sse.open_stream(url, last_id):
            if self.opts.trace:
                self.emit_trace(f"< event: {event.event}  id: {event.id}  {len(event.data.encode())} B of data")
            self.status = "live over SSE"
            self.receive(event.data)
            self.check_done()

    def receive(self, raw: str | bytes) -> dict[str, Any] | None:
        """Decode and apply one server message; print it with ``--json``."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            msg = json.loads(text)
        except ValueError:
            self.err.write(f"watch: not JSON: {text[:80]!r}\n")
            return None
        if not isinstance(msg, dict):
            return None
        self.state.apply(msg)
        if self.opts.json:
            self.out.write(text + "\n")
            self.out.flush()
        elif self.opts.trace and msg.get("t") != "q":
            self.emit_trace(f"  {text[:120]}{'…' if len(text) > 120 else ''}")
        return msg

    def check_done(self) -> None:
        if self.opts.count is not None and self.state.updates >= self.opts.count:
            raise Done

    def render(self) -> Table:
        """The live table: one row per symbol, coloured by the change since the previous close."""
        s = self.state
        caption = f"{s.updates} updates · node {s.node or '–'}" + (f" · {s.errors[-1]}" if s.errors else "")
        table = Table(title=f"{len(s.names)} symbols · epoch {s.epoch or '–'} · seq {s.seq} · {self.status}",
                      caption=caption, expand=False, header_style="bold")
        for name in ("Symbol", "Last", "Chg", "Chg %", "High", "Low", "Volume"):
            table.add_column(name, justify="left" if name == "Symbol" else "right", no_wrap=True)
        for sym, q in s.rows():
            table.add_row(*self._cells(sym, q))
        return table

    def _tag(self, sym: str) -> Text:
        """`` paused``, or `` stale since 14:02:11`` (local time of its newest row), or nothing."""
        if sym in self.state.paused:
            return Text(" paused", style="dim")
        since = self.state.stale.get(sym)
        if since is None:
            return Text("")
        return Text(f" stale since {datetime.fromtimestamp(since / 1000):%H:%M:%S}", style="yellow")

    def _cells(self, sym: str, q: Quote | None) -> list[Text | str]:
        label = Text(sym, style="bold") + self._tag(sym)
        if q is None:
            return [label, "–", "–", "–", "–", "–", "–"]
        colour = "green" if q.change > 0 else "red" if q.change < 0 else ""
        tick = {1: "▲", -1: "▼"}.get(q.direction, " ")
        return [
            label,
            Text(f"{q.last:,.2f} {tick}", style="bold"),
            Text(f"{q.change:+.2f}", style=colour),
            Text(f"{q.pct:+.2f}%", style=colour),
            f"{q.high:,.2f}",
            f"{q.low:,.2f}",
            f"{q.volume:,}",
        ]


def run(opts: WatchOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
    """Watch until done; the command's whole body."""
    asyncio.run(Watcher(opts, out, err).run())


__all__ = ["DEFAULT_URL", "WatchOptions", "Watcher", "run", "socket_url"]
