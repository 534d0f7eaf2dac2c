"""A cheap WebSocket load client: thousands of subscribers from one or a few processes.

``python -m benchmarks.loadclient --url ws://127.0.0.1:8000/ws/quotes/ --clients 1000 --duration 20``
(or ``python manage.py loadtest`` with the same options) opens ``--clients`` connections at a
bounded rate, subscribes each to the whole board or to a watchlist, warms up, measures for
``--duration`` seconds, closes every connection and prints ONE JSON line on stdout (a short
summary and, on a terminal, a progress bar go to stderr). It stops by itself.

The client shares the machine's cores with the server it measures, so it is built to be cheap
(``benchmarks.wsclient``: RFC 6455 by hand on ``asyncio.Protocol``, on uvloop when installed;
``q`` frames counted without being decoded; freshness kept in a 1 ms histogram), and it
reports its own CPU next to the server's. One process drives every connection by default;
``--procs K`` forks K client processes and merges their counts.

What is measured (see ``wsclient.Group`` and ``Coordinator.result``):

- **freshness** of every delivered row: receipt wall time − the row's ``ts_ms`` (same clock:
  client and feed run on one machine), p50/p95/p99/max over the measure window;
- **seq continuity** on whole-board connections: a gap is a ``q`` whose ``seq`` is more than
  one past the previous one; a ``snap`` restarts continuity; after the first, a ``snap`` whose
  ``since`` is at or before the seq held is a merge of batches (counted as a delivered frame),
  any other is a resync;
- **throughput**: frames, rows (ticks) and wire bytes delivered per second;
- **errors**: failed connects (by reason) and closes the client did not ask for (by code);
- **CPU**: the client's own (all its processes) and, with ``--server-pid``, the server's
  (user + system, children included) with its RSS at start, end and peak of the window;
- with ``--storm M``, a **storm** (``benchmarks.storm``): M more connections all at once after
  ``--duration`` seconds, the steady clients' freshness before it and during it, and each
  newcomer's time to ``hello`` and to its first update.

Dialects: ``v1`` (docs/PROTOCOL.md: ``hello``, then ``sub``, then ``snap`` and ``q`` frames) and
``socketio`` (Engine.IO 4 over a WebSocket: ``42["q",{…v1 q payload…}]`` events).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any
from urllib.parse import urlsplit

from . import storm
from .wsclient import DIALECTS, Conn, Group, freshness, list_percentiles

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a locked dependency
    uvloop = None

CLOSE_TIMEOUT = 5.0  # seconds to wait for the server to answer our close frames
ACK_SLICES = 10  # acks go out in this many slices per period, not all at once
RAMP_DEADLINE = "ramp deadline"  # a connect given up when the ramp had to end


class Worker:
    """One client process: opens its share of the connections and answers the coordinator."""

    def __init__(self, opts: argparse.Namespace, indices: list[int], pipe: Connection,
                 newcomers: Sequence[int] = ()) -> None:
        self.opts = opts
        self.indices = indices
        self.newcomer_indices = newcomers  # a storm's, connected all at once after the quiet window
        self.pipe = pipe
        url = urlsplit(opts.url)
        if opts.dialect == "socketio":
            path = url.path if url.path not in ("", "/") else "/socket.io/"
            self.target = f"{path}?EIO=4&transport=websocket".encode()
        else:
            self.target = ((url.path or "/") + (f"?{url.query}" if url.query else "")).encode()
        self.addr = (url.hostname or "127.0.0.1", url.port or 80)
        self.host_header = url.netloc.encode()
        self.whole_board = opts.symbols == "all"
        self.fast, self.slow, self.newcomers = Group(), Group(), Group()
        self.conns: dict[int, Conn] = {}
        self.connect_ms: list[float] = []
        self.connect_errors: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.nodes: dict[str, int] = {}  # the server process each connection landed on (``node`` in hello)
        self.slow_set = slow_clients(opts.clients, opts.slow_fraction)
        self.all_lost: asyncio.Event | None = None

    # Called by connections

    def watchlist(self, index: int, listed: list[dict[str, Any]]) -> list[str] | None:
        """Client ``index``'s watchlist: K symbols picked (seeded) from those listed; None: whole board."""
        if self.whole_board:
            return None
        symbols = sorted(s["s"] for s in listed if not s.get("paused"))
        k = min(int(self.opts.symbols), len(symbols))
        return random.Random(self.opts.seed * 1_000_003 + index).sample(symbols, k)

    def lost(self, conn: Conn) -> None:
        self.conns.pop(conn.index, None)
        if self.all_lost is not None and not self.conns:
            self.all_lost.set()

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1

    def landed(self, node: Any) -> None:
        if node is not None:
            self.nodes[str(node)] = self.nodes.get(str(node), 0) + 1

    # Phases

    async def connect_one(self, index: int) -> None:
        """Open connection ``index`` and wait for its hello; a failure is counted by reason."""
        slow = index in self.slow_set
        group = self.slow if slow else self.fast
        conn = DIALECTS[self.opts.dialect](self, index, group)
        started = time.perf_counter()
        failed = await self.open(conn, self.opts.connect_timeout, self.opts.slow_rcvbuf if slow else 0)
        if failed:
            self.connect_errors[failed] = self.connect_errors.get(failed, 0) + 1
            return
        self.connect_ms.append((conn.connected_at - started) * 1000)

    async def open(self, conn: Conn, timeout: float, rcvbuf: int = 0) -> str | None:
        """Connect ``conn`` and wait for its hello, at most ``timeout`` seconds: None once it is
        ready (``connected_at`` set, counted in its group), else why it failed."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            async with asyncio.timeout(timeout):
                await self.loop.sock_connect(sock, self.addr)
                await self.loop.create_connection(lambda: conn, sock=sock)
                self.conns[conn.index] = conn
                await conn.ready
        except (Exception, asyncio.CancelledError) as exc:  # cancelled: the ramp's deadline passed
            if isinstance(exc, asyncio.CancelledError):
                reason = RAMP_DEADLINE
            elif isinstance(exc, TimeoutError):
                reason = "timeout"
            elif type(exc) is ConnectionError:  # raised by Conn: the reason is the message
                reason = str(exc)
            else:
                reason = type(exc).__name__
            self.conns.pop(conn.index, None)
            conn.abandon()
            if conn.transport is None:
                sock.close()
            return reason
        conn.connected_at = time.perf_counter()
        conn.group.clients += 1
        return None

    async def ramp(self) -> None:
        """Open the connections at ``connect_rate / procs`` a second, at most ``max_pending`` at once.

        The ramp ends by its deadline (its nominal length plus ``connect_timeout``) even when the
        server cannot keep up: attempts still pending then are given up and counted as failed.
        """
        rate = self.opts.connect_rate / self.opts.procs
        pending: set[asyncio.Task[None]] = set()
        limit = asyncio.Semaphore(self.opts.max_pending)
        t0 = self.loop.time()
        deadline = t0 + ramp_seconds(self.opts)
        last_report = 0.0

        async def one(index: int) -> None:
            async with limit:
                await self.connect_one(index)

        for k, index in enumerate(self.indices):
            due = t0 + k / rate
            if due > deadline:
                break
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(index))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if self.loop.time() - last_report > 0.2:
                last_report = self.loop.time()
                self.send("progress", self.progress())
        while pending and self.loop.time() < deadline:
            await asyncio.wait(pending, timeout=min(0.2, max(0.0, deadline - self.loop.time())))
            self.send("progress", self.progress())
        for task in list(pending):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        given_up = len(self.indices) - len(self.connect_ms) - sum(self.connect_errors.values())
        if given_up > 0:  # never started, or cancelled while waiting for a handshake slot
            self.connect_errors[RAMP_DEADLINE] = self.connect_errors.get(RAMP_DEADLINE, 0) + given_up

    def progress(self) -> dict[str, int]:
        return {"connected": len(self.connect_ms), "failed": sum(self.connect_errors.values()),
                "frames": self.fast.frames + self.slow.frames}

    def send(self, kind: str, data: Any = None) -> None:
        try:
            self.pipe.send((kind, data))
        except OSError:  # the coordinator is gone: nobody to report to
            os._exit(3)

    async def command(self) -> str:
        ready: asyncio.Future[str] = self.loop.create_future()

        def readable() -> None:
            self.loop.remove_reader(self.pipe.fileno())
            try:
                ready.set_result(self.pipe.recv())
            except EOFError:
                ready.set_result("stop")  # the coordinator is gone

        self.loop.add_reader(self.pipe.fileno(), readable)
        return await ready

    def watchdog(self, parent: int) -> None:
        """Exit (dropping every connection) as soon as the coordinator is gone."""
        if os.getppid() != parent:
            os._exit(3)
        self.loop.call_later(1.0, self.watchdog, parent)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.watchdog(os.getppid())
        await self.ramp()
        if self.opts.ack > 0:
            self.loop.call_later(self.opts.ack / ACK_SLICES, self.ack_slice, 0)
        gc.collect()
        gc.freeze()  # the connections live to the end: keep them out of the collector's walks
        self.send("ready", self.progress())
        await self.command()  # "measure"
        for group in (self.fast, self.slow):
            group.reset()
        for conn in self.conns.values():
            conn.delivered = 0
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if self.slow_set:
            self.loop.call_later(self.opts.slow_after, self.pause_slow, True)
            self.loop.call_later(self.opts.slow_after + self.opts.slow_for, self.pause_slow, False)
        beat = self.loop.call_later(1.0, self.heartbeat)
        stormed = await self.storm_window() if self.opts.storm else None
        await self.command()  # "stop"
        beat.cancel()
        window, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        fast = self.fast.summary() if stormed is None else merge([stormed["before"], self.fast.summary()])
        stats = {"window_s": window, "cpu_s": cpu, "fast": fast, "slow": self.slow.summary(),
                 "newcomers": self.newcomers.summary(), "storm": stormed,
                 "connect_ms": self.connect_ms, "connect_errors": self.connect_errors, "notes": self.notes,
                 "nodes": self.nodes, "open": len(self.conns),
                 "least": min((c.delivered for c in self.conns.values() if c.group is self.fast), default=None)}
        await self.close_all()
        self.send("stats", stats)

    async def storm_window(self) -> dict[str, Any]:
        """The storm as the coordinator paces it: "storm" ends the steady clients' window before it
        and starts the newcomers (in the process that has them); "calm" ends the storm's window."""
        await self.command()  # "storm"
        before = self.fast.summary()
        self.fast.reset()
        outcomes: list[storm.Outcome] = []
        window = 0.0
        if self.newcomer_indices:
            outcomes, window = await storm.arrive(self, self.newcomer_indices, self.opts.storm_deadline)
            self.send("stormed")
        await self.command()  # "calm"
        return {"before": before, "during": self.fast.summary(), "outcomes": outcomes, "window_s": window}

    def ack_slice(self, k: int) -> None:
        """Every ``--ack`` seconds each reading client acknowledges its last seq, as the page does;
        a tenth of the clients every tenth of the period."""
        for index, conn in self.conns.items():
            if index % ACK_SLICES == k:
                conn.ack()
        self.loop.call_later(self.opts.ack / ACK_SLICES, self.ack_slice, (k + 1) % ACK_SLICES)

    def heartbeat(self) -> None:
        self.send("progress", self.progress())
        self.loop.call_later(1.0, self.heartbeat)

    def pause_slow(self, pause: bool) -> None:
        for index in self.slow_set:
            conn = self.conns.get(index)
            if conn is None or conn.transport is None or conn.transport.is_closing():
                continue
            if pause:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()
            conn.paused = pause

    async def close_all(self) -> None:
        self.all_lost = asyncio.Event()
        for conn in list(self.conns.values()):
            conn.close()
        if self.conns:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.all_lost.wait()
            except TimeoutError:
                pass
        for conn in list(self.conns.values()):
            if conn.transport:
                conn.transport.abort()


def ramp_seconds(opts: argparse.Namespace) -> float:
    """The longest a ramp may take: its nominal length, then ``connect_timeout`` for the last attempts."""
    return opts.clients / opts.connect_rate + opts.connect_timeout


def slow_clients(clients: int, fraction: float) -> set[int]:
    """Indexes of the clients that stop reading: ``fraction`` of them, spread evenly."""
    if fraction <= 0:
        return set()
    return {i for i in range(clients) if int((i + 1) * fraction) > int(i * fraction)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def worker_main(opts: argparse.Namespace, indices: list[int], newcomers: list[int], pipe: Connection,
                inherited: list[Connection]) -> None:
    """Entry point of a client process: ``indices`` are its steady connections, ``newcomers`` its storm's."""
    for other in inherited:  # the coordinator's pipe ends, copied by fork: closed, its exit reads as EOF here
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    signal.alarm(int(opts.deadline) + 30)  # never outlive a stuck coordinator by much
    worker = Worker(opts, indices, pipe, newcomers)
    if opts.loop == "uvloop":
        uvloop.run(worker.run())
    else:
        asyncio.run(worker.run())


class ServerWatch:
    """CPU and RSS of the server processes (and their children), read with psutil."""

    def __init__(self, pids: Sequence[int]) -> None:
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = 0

    def _tree(self) -> list[Any]:
        out = []
        for proc in self.procs:
            out.append(proc)
            with contextlib.suppress(Exception):  # it may have exited
                out += proc.children(recursive=True)
        return out

    def cpu(self) -> float:
        return sum(self.cpu_each())

    def cpu_each(self) -> list[float]:
        """CPU seconds of each watched process with its children, in ``pids`` order."""
        out = []
        for root in self.procs:
            tree = [root]
            with contextlib.suppress(Exception):  # it may have exited
                tree += root.children(recursive=True)
            total = 0.0
            for proc in tree:
                try:
                    t = proc.cpu_times()
                except Exception:
                    continue
                total += t.user + t.system + (t.children_user + t.children_system if proc is root else 0.0)
            out.append(total)
        return out

    def rss(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(Exception):
                total += proc.memory_info().rss
        self.peak = max(self.peak, total)
        return total


class Coordinator:
    """Starts the client processes, drives the phases, samples the server, merges the stats."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.watch = ServerWatch(opts.server_pid) if opts.server_pid else None
        self.aux = ServerWatch(opts.aux_pid) if opts.aux_pid else None
        self.bar = Progress(enabled=not opts.quiet and sys.stderr.isatty())
        self.procs: list[multiprocessing.Process] = []
        self.pipes: list[Connection] = []
        self.progress: list[dict[str, int]] = []

    def start_workers(self) -> None:
        ctx = multiprocessing.get_context("fork")
        k, n = self.opts.procs, self.opts.clients
        # A storm's newcomers get a process of their own: their handshakes then do not hold up
        # the steady clients' reading (in one loop they added about 200 ms to the steady p99).
        shares = [(list(range(i, n, k)), []) for i in range(k)]
        if self.opts.storm:
            shares.append(([], list(range(n, n + self.opts.storm))))
        for i, (steady, newcomers) in enumerate(shares):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, daemon=True, name=f"loadclient-{i}",
                               args=(self.opts, steady, newcomers, child, [*self.pipes, parent]))
            proc.start()
            child.close()
            self.procs.append(proc)
            self.pipes.append(parent)
            self.progress.append({"connected": 0, "failed": 0, "frames": 0})

    def stop_workers(self, graceful: bool) -> None:
        """Wait for the client processes to exit (or kill them at once after an error)."""
        for proc in self.procs:
            if graceful:
                proc.join(timeout=CLOSE_TIMEOUT + 5)
            if proc.is_alive():
                proc.kill()  # by pid: only processes this coordinator started
                proc.join(timeout=5)

    def wait_for(self, kind: str, timeout: float, on_progress: Any = None,
                 workers: Sequence[int] | None = None) -> list[Any]:
        """Collect one ``kind`` message from every worker (or those listed), handling progress
        messages meanwhile."""
        wanted = range(len(self.pipes)) if workers is None else workers
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(wanted):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"client processes did not report {kind!r} within {timeout:.0f}s")
            ready = wait([self.pipes[i] for i in wanted if i not in got], timeout=min(left, 0.5))
            for pipe in ready:
                i = self.pipes.index(pipe)  # type: ignore[arg-type]
                try:
                    what, data = pipe.recv()  # type: ignore[union-attr]
                except EOFError:
                    raise RuntimeError(f"client process {i} died") from None
                if what == "progress":
                    self.progress[i] = data
                elif what == kind:
                    got[i] = data
                    if what == "ready":
                        self.progress[i] = data
            if on_progress:
                on_progress()
        return [got[i] for i in wanted]

    def broadcast(self, command: str) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def totals(self) -> dict[str, int]:
        return {k: sum(p[k] for p in self.progress) for k in ("connected", "failed", "frames")}

    def run(self) -> dict[str, Any]:
        opts = self.opts
        base = opts.server_rss_base or (self.watch.rss() if self.watch else None)
        t_start = time.monotonic()
        graceful = False
        self.start_workers()
        try:
            ramp_budget = ramp_seconds(opts) + 20  # the workers end their ramp by its deadline

            def ramp_bar() -> None:
                t = self.totals()
                self.bar.show("connect", t["connected"] + t["failed"], opts.clients, f"{t['failed']} failed")

            self.wait_for("ready", ramp_budget, ramp_bar)
            ramp_s = time.monotonic() - t_start
            self.bar.done()
            warm_end = time.monotonic() + opts.warmup
            while time.monotonic() < warm_end:
                if self.watch:
                    self.watch.rss()
                time.sleep(min(0.25, max(0.0, warm_end - time.monotonic())))
            if self.watch:
                self.watch.peak = 0
                rss0, cpu0 = self.watch.rss(), self.watch.cpu_each()
            aux0 = self.aux.cpu_each() if self.aux else []
            own0, t0 = cpu_seconds(), time.monotonic()
            self.broadcast("measure")
            end = t0 + opts.duration
            frames0 = self.totals()["frames"]

            def measuring() -> None:
                if self.watch:
                    self.watch.rss()
                elapsed = time.monotonic() - t0
                frames = self.totals()["frames"]
                self.bar.show("storm" if elapsed > opts.duration else "measure", int(elapsed),
                              int(opts.duration + (opts.storm_deadline if opts.storm else 0)),
                              f"{(frames - frames0) / max(elapsed, 1e-3):,.0f} frames/s")

            while time.monotonic() < end:
                self.drain_progress()
                measuring()
                time.sleep(min(0.25, max(0.0, end - time.monotonic())))
            if opts.storm:  # the newcomers' process ends the storm's window
                self.broadcast("storm")
                self.wait_for("stormed", opts.storm_deadline + 20, measuring, workers=[len(self.pipes) - 1])
                self.broadcast("calm")
            self.broadcast("stop")
            window = time.monotonic() - t0
            server = None
            if self.watch:
                cpu1, rss1 = self.watch.cpu_each(), self.watch.rss()
                server = {"cpu": [b - a for a, b in zip(cpu0, cpu1, strict=True)], "rss0": rss0, "rss1": rss1,
                          "peak": self.watch.peak, "base": base}
            aux = [b - a for a, b in zip(aux0, self.aux.cpu_each(), strict=True)] if self.aux else None
            own = cpu_seconds() - own0
            self.bar.done()
            stats = self.wait_for("stats", CLOSE_TIMEOUT + 20)
            graceful = True
        finally:
            self.bar.done()
            self.stop_workers(graceful)
        return self.result(stats, window, own, server, aux, ramp_s)

    def drain_progress(self) -> None:
        for i, pipe in enumerate(self.pipes):
            while pipe.poll():
                what, data = pipe.recv()
                if what == "progress":
                    self.progress[i] = data

    def result(self, stats: list[dict[str, Any]], window: float, own_cpu: float, server: dict[str, Any] | None,
               aux_cpu: list[float] | None, ramp_s: float) -> dict[str, Any]:
        """The JSON line: every worker's counts merged, rates over the measure window."""
        opts = self.opts
        fast, slow = merge([s["fast"] for s in stats]), merge([s["slow"] for s in stats])
        newcomers = merge([s["newcomers"] for s in stats])
        everyone = merge([fast, slow, newcomers])
        connect_ms = [v for s in stats for v in s["connect_ms"]]
        connect_errors: dict[str, int] = {}
        for s in stats:
            for k, v in s["connect_errors"].items():
                connect_errors[k] = connect_errors.get(k, 0) + v
        notes: dict[str, int] = {}
        nodes: dict[str, int] = {}
        for s in stats:
            for k, v in s["notes"].items():
                notes[k] = notes.get(k, 0) + v
            for k, v in s["nodes"].items():
                nodes[k] = nodes.get(k, 0) + v
        client_cpu = sum(s["cpu_s"] for s in stats) + own_cpu
        connected = len(connect_ms)
        closes = everyone["closes"]
        out: dict[str, Any] = {
            "label": opts.label, "url": opts.url, "dialect": opts.dialect, "symbols": opts.symbols,
            "clients": opts.clients, "connected": connected, "procs": opts.procs, "loop": opts.loop, "ack_s": opts.ack,
            "ramp_s": round(ramp_s, 2), "warmup_s": opts.warmup, "duration_s": round(window, 2),
            "errors": {"connect": connect_errors, "closes": closes,
                       "total": sum(connect_errors.values()) + sum(closes.values())},
            "connect_ms": dict(zip(("p50", "p99", "max"), list_percentiles(connect_ms, (50, 99, 100)), strict=True)),
            "freshness_ms": freshness(fast),
            "gaps": everyone["gaps"], "missed_batches": everyone["missed"], "reorders": everyone["reorders"],
            "resyncs": everyone["resyncs"], "merges": everyone["merges"],
            "frames": everyone["frames"], "rows": everyone["rows"],
            "frames_per_s": round(everyone["frames"] / window, 1),
            "ticks_per_s": round(everyone["rows"] / window, 1),
            "bytes_per_s": round(everyone["bytes"] / window, 1),
            "frames_per_client_s": round(everyone["frames"] / window / connected, 2) if connected else None,
            # the reading client that got the fewest updates (q frames and merges) in the window
            "least_frames_per_client_s": round(min(counts) / window, 2) if (counts := [
                s["least"] for s in stats if s.get("least") is not None]) else None,
            "client_cpu_s": round(client_cpu, 3),
            "client_cpu_pct": round(100 * client_cpu / window, 1),
            "client_us_per_frame": round(1e6 * client_cpu / everyone["frames"], 2) if everyone["frames"] else None,
        }
        if notes:
            out["notes"] = notes
        if nodes:  # connections per server process, by the node name its hello gave
            out["nodes"] = dict(sorted(nodes.items()))
        if aux_cpu is not None:
            total = sum(aux_cpu)
            out["aux"] = {"pids": opts.aux_pid, "cpu_s": round(total, 3), "cpu_pct": round(100 * total / window, 1),
                          "each": cpu_each(opts.aux_pid, aux_cpu, window)}
        if server:
            cpu = sum(server["cpu"])
            base = server["base"]
            out["server"] = {
                "pids": opts.server_pid, "cpu_s": round(cpu, 3), "cpu_pct": round(100 * cpu / window, 1),
                "each": cpu_each(opts.server_pid, server["cpu"], window),
                "us_per_frame": round(1e6 * cpu / everyone["frames"], 2) if everyone["frames"] else None,
                "us_per_tick": round(1e6 * cpu / everyone["rows"], 3) if everyone["rows"] else None,
                "rss_base_mb": mb(base), "rss_start_mb": mb(server["rss0"]), "rss_end_mb": mb(server["rss1"]),
                "rss_peak_mb": mb(server["peak"]),
                "rss_per_conn_kb": round((server["rss1"] - base) / connected / 1024, 1)
                if base and connected else None,
            }
        if opts.slow_fraction > 0:
            out["slow"] = {
                "fraction": opts.slow_fraction, "after_s": opts.slow_after, "for_s": opts.slow_for,
                "rcvbuf": opts.slow_rcvbuf, **group_summary(slow, window), "freshness_ms": freshness(slow),
            }
            out["fast"] = group_summary(fast, window)
        if opts.storm:
            storms = [s["storm"] for s in stats]
            out["storm"] = storm.summary(merge([s["before"] for s in storms]), merge([s["during"] for s in storms]),
                                         [o for s in storms for o in s["outcomes"]], [s["window_s"] for s in storms],
                                         opts.storm_deadline)
            out["newcomers"] = group_summary(newcomers, window)
        return out


def cpu_each(pids: Sequence[int], cpu: Sequence[float], window: float) -> list[dict[str, Any]]:
    """Per watched process (with its children): CPU seconds and % over the measure window."""
    return [{"pid": pid, "cpu_s": round(c, 3), "cpu_pct": round(100 * c / window, 1)}
            for pid, c in zip(pids, cpu, strict=True)]


def merge(groups: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"clients": 0, "frames": 0, "rows": 0, "bytes": 0, "snaps": 0, "gaps": 0, "missed": 0,
                           "reorders": 0, "resyncs": 0, "merges": 0, "closes": {}, "fmax": -1, "hist": {}}
    for g in groups:
        for k in ("clients", "frames", "rows", "bytes", "snaps", "gaps", "missed", "reorders", "resyncs", "merges"):
            out[k] += g[k]
        for k, v in g["closes"].items():
            out["closes"][k] = out["closes"].get(k, 0) + v
        for k, v in g["hist"].items():
            out["hist"][k] = out["hist"].get(k, 0) + v
        out["fmax"] = max(out["fmax"], g["fmax"])
    return out


def group_summary(group: dict[str, Any], window: float) -> dict[str, Any]:
    """What the fast and the slow clients of a slow-consumer run got, apart."""
    clients = group["clients"]
    return {"clients": clients, "frames": group["frames"],
            "frames_per_client_s": round(group["frames"] / window / clients, 2) if clients else None,
            "gaps": group["gaps"], "missed_batches": group["missed"], "resyncs": group["resyncs"],
            "merges": group["merges"],
            "closes": group["closes"]}


def mb(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value else None


class Progress:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False
        self.last = 0.0

    def show(self, phase: str, done: int, total: int, extra: str = "") -> None:
        if not self.enabled or time.monotonic() - self.last < 0.1:
            return
        self.last = time.monotonic()
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\r  {phase:<8}[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}\033[K")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def summary_line(r: dict[str, Any]) -> str:
    f = r["freshness_ms"]
    line = (f"{r['label'] or r['url']}: {r['connected']}/{r['clients']} connected, {r['frames_per_s']:,.0f} frames/s, "
            f"{r['ticks_per_s']:,.0f} ticks/s, freshness p50 {f['p50']} p99 {f['p99']} max {f['max']} ms, "
            f"gaps {r['gaps']}, resyncs {r['resyncs']}, merges {r['merges']}, errors {r['errors']['total']}, "
            f"client CPU {r['client_cpu_pct']}%")
    if "server" in r:
        s = r["server"]
        line += (f"; server CPU {s['cpu_pct']}%, {s['us_per_frame']} µs/frame, {s['us_per_tick']} µs/tick, "
                 f"RSS {s['rss_end_mb']} MB ({s['rss_per_conn_kb']} KB/conn)")
    if "slow" in r:
        s = r["slow"]
        f = r["fast"]
        line += (f"; the others: {f['frames_per_client_s']} frames/s each, resyncs {f['resyncs']}; slow clients: "
                 f"{s['clients']}, {s['frames_per_client_s']} frames/s each, freshness p99 "
                 f"{s['freshness_ms']['p99']} ms, resyncs {s['resyncs']}, gaps {s['gaps']}, closes {s['closes']}")
    if "storm" in r:
        s = r["storm"]
        line += (f"; storm of {s['newcomers']}: steady p99 {s['steady_before_ms']['p99']} ms before, "
                 f"{s['steady_during_ms']['p99']} ms in its {s['window_s']} s; newcomers' hello p50/p99/max "
                 f"{'/'.join(str(v) for v in s['hello_ms'].values())} ms, first update "
                 f"{'/'.join(str(v) for v in s['live_ms'].values())} ms, {s['lost']} lost {s['lost_by'] or ''}")
    return line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The load client's options (shared by ``manage.py loadtest``)."""
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/PATH (for socketio: ws://HOST:PORT/)")
    parser.add_argument("--clients", type=int, default=100, help="connections to open (default %(default)s)")
    parser.add_argument("--symbols", default="all",
                        help='"all" (whole board) or K: a watchlist of K symbols per client (default %(default)s)')
    parser.add_argument("--duration", type=float, default=20.0, help="measure window, seconds (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds between ramp and measure (default %(default)s)")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="v1")
    parser.add_argument("--server-pid", type=int, action="append", default=[],
                        help="server process to watch (CPU, RSS); repeatable")
    parser.add_argument("--aux-pid", type=int, action="append", default=[],
                        help="another process whose CPU to report apart (Redis, the feed, a proxy), in total and "
                        "per pid; repeatable")
    parser.add_argument("--server-rss-base", type=int, default=0,
                        help="the server's idle RSS in bytes (default: measured before connecting)")
    parser.add_argument("--procs", type=int, default=1, help="client processes (default %(default)s)")
    parser.add_argument("--connect-rate", type=float, default=500.0,
                        help="new connections per second (default %(default)s)")
    parser.add_argument("--max-pending", type=int, default=500,
                        help="handshakes in flight at once (default %(default)s)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds from TCP connect to hello (default %(default)s)")
    parser.add_argument("--storm", type=int, default=0, metavar="M",
                        help="a storm: after --duration seconds of the --clients steady ones, M more connect all at "
                             "once; the window lasts until every one is live or --storm-deadline (benchmarks/storm.py; "
                             "default 0: none)")
    parser.add_argument("--storm-deadline", type=float, default=30.0,
                        help="seconds a newcomer has from the storm's start to its first update (default %(default)s)")
    parser.add_argument("--slow-fraction", type=float, default=0.0, help="fraction of clients that stop reading")
    parser.add_argument("--slow-after", type=float, default=5.0,
                        help="seconds into the measure window (default %(default)s)")
    parser.add_argument("--slow-for", type=float, default=30.0, help="seconds without reading (default %(default)s)")
    parser.add_argument("--slow-rcvbuf", type=int, default=16384,
                        help="SO_RCVBUF of slow clients, so the server sees them stall soon (0: kernel default; "
                             "default %(default)s)")
    parser.add_argument("--ack", type=float, default=0.0, metavar="SECONDS",
                        help="v1: every SECONDS each client that is reading sends {op: ack, seq} with the last seq "
                             "it got, if that moved, as the page does (0: never, the default; the server's "
                             "slow-client pause needs acks)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the watchlist picks (default %(default)s)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop" if uvloop else "asyncio")
    parser.add_argument("--label", default="", help="a name for this run in the JSON line")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stderr")


def check(opts: argparse.Namespace) -> None:
    """Validate options; raises ValueError with a message for the user."""
    if not opts.url.startswith("ws://"):
        raise ValueError("--url must be ws://HOST:PORT/PATH (no TLS in the load client)")
    if opts.symbols != "all" and not (opts.symbols.isdigit() and int(opts.symbols) > 0):
        raise ValueError('--symbols must be "all" or a positive number')
    if opts.clients < 1 or opts.procs < 1 or opts.procs > opts.clients:
        raise ValueError("need 1 <= --procs <= --clients")
    if opts.duration <= 0 or opts.connect_rate <= 0:
        raise ValueError("--duration and --connect-rate must be positive")
    if not 0 <= opts.slow_fraction < 1:
        raise ValueError("--slow-fraction must be in [0, 1)")
    if opts.slow_fraction and opts.slow_after + opts.slow_for >= opts.duration:
        raise ValueError("the slow window (--slow-after + --slow-for) must end inside --duration")
    if opts.storm < 0 or opts.storm_deadline <= 0:
        raise ValueError("--storm must be 0 or more, --storm-deadline positive")
    if opts.storm and opts.slow_fraction:
        raise ValueError("a storm's steady clients all read: no --slow-fraction with --storm")
    if opts.loop == "uvloop" and uvloop is None:
        raise ValueError("uvloop is not installed: use --loop asyncio")


def run(opts: argparse.Namespace) -> dict[str, Any]:
    """One load run with these options; returns the result (the JSON line's object)."""
    check(opts)
    raise_nofile()
    opts.deadline = (opts.clients / opts.connect_rate + opts.connect_timeout + opts.warmup + opts.duration
                     + (opts.storm_deadline if opts.storm else 0) + CLOSE_TIMEOUT + 60)
    result = Coordinator(opts).run()
    if not opts.quiet:
        print(summary_line(result), file=sys.stderr)
    return result


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadclient", description=__doc__.splitlines()[0])
    add_arguments(parser)
    opts = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # as Ctrl-C: stop the client processes, then exit
    try:
        result = run(opts)
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
