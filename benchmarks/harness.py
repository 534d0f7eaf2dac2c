"""What every benchmark path shares: the market, the processes the runner starts (each stopped by
its pid), readiness probes and the session's scratch directory and database."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.procs import PYTHON as PY
from deploy.procs import ROOT, Proc, free_port, http_ok, redis_argv, redis_ok, started

__all__ = ["PY", "ROOT", "Bench", "Deployment", "Pinning", "Proc", "free_port", "http_ok", "wait_ready",
           "ws_first_message"]
EXTRA_SYMBOLS = ROOT / "benchmarks" / "extra_symbols.csv"

SYMBOLS, RATE, BATCH_MS = 50, 200, 100  # the market, for every path


@dataclass(frozen=True)
class Pinning:
    """Which cores the server processes get, and which the rest (the load client, Redis, the
    feed, nginx): the server alone on its own core, as a fair measure of its CPU per frame.
    ``server`` empty: everyone shares every core (``--no-pin``, or a one-core machine)."""

    server: frozenset[int]
    support: frozenset[int]

    @classmethod
    def choose(cls, pin: bool) -> Pinning:
        cores = os.sched_getaffinity(0)
        if not pin or len(cores) < 2:
            return cls(frozenset(), frozenset(cores))
        server = max(cores)
        return cls(frozenset({server}), frozenset(cores - {server}))

    def describe(self) -> str:
        if not self.server:
            return "shared: server, load client, Redis and feed on every core"
        return (f"pinned: server on core {','.join(map(str, sorted(self.server)))}; load client, Redis, feed and "
                f"proxy on {','.join(map(str, sorted(self.support)))}")

    def enter(self) -> None:
        """Put this process (and so every process it starts from now on) on the support cores."""
        os.sched_setaffinity(0, self.support)

    def serve(self, proc: Proc) -> None:
        """Move a server process, every thread of it, onto the server cores."""
        if not self.server:
            return
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(task.name), self.server)


def wait_ready(proc: Proc, check: Callable[[], object], what: str, timeout: float = 40.0) -> None:
    """Poll ``check`` until it holds; fail early, with the log, if ``proc`` exits."""
    started(proc, check, timeout, what)


def ws_first_message(url: str, dialect: str) -> bool:
    """A WebSocket opens and says hello (v1) or sends the Engine.IO open packet (socketio)."""
    from websockets.sync.client import connect

    if dialect == "socketio":
        url = url.rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
    with connect(url, open_timeout=3, close_timeout=1, compression=None) as ws:
        first = ws.recv(timeout=3)
    first = first if isinstance(first, str) else first.decode()
    return first.startswith("0{") if dialect == "socketio" else json.loads(first).get("t") == "hello"


def rss_tree(pid: int) -> int:
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


class Bench:
    """One session: a scratch directory, the processes started, the prepared database."""

    def __init__(self, logdir: Path) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ticker-bench-"))
        self.logdir = logdir
        self.procs: list[Proc] = []
        self.db_ready = False

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, **popen: Any) -> Proc:
        proc = Proc(name, argv, self.logdir, env=env or base_env(), **popen)
        self.procs.append(proc)
        return proc

    def stop(self, *procs: Proc) -> None:
        for proc in procs:
            proc.stop()
            if proc in self.procs:
                self.procs.remove(proc)

    def stop_all(self) -> None:
        self.stop(*reversed(self.procs))

    def cleanup(self) -> None:
        self.stop_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def redis(self) -> tuple[Proc, str]:
        port = free_port()
        proc = self.start(f"redis-{port}", redis_argv(port))
        wait_ready(proc, lambda: redis_ok(port), f"redis on {port}")
        return proc, f"redis://127.0.0.1:{port}/0"

    def ours_env(self, redis_url: str) -> dict[str, str]:
        env = base_env()
        env.update(CHANNEL_LAYER_URL=redis_url, DATABASE_URL=f"sqlite:///{self.tmp / 'db.sqlite3'}",
                   TICKER_VAR_DIR=str(self.tmp / "var"), DJANGO_SUPERUSER_PASSWORD="x", TICKER_LOG_LEVEL="INFO",
                   # the load client's thousands of connections all come from loopback
                   TICKER_LIMIT_EXEMPT="127.0.0.0/8,::1")
        return env

    def prepare_database(self, env: dict[str, str]) -> None:
        """Migrate and seed the 50-symbol market once per session: the 42 demo symbols plus 8."""
        if self.db_ready:
            return
        seed = ("from pathlib import Path; from ticker.seed import seed_symbols; from ticker.models import Symbol; "
                f"seed_symbols(Path({str(EXTRA_SYMBOLS)!r})); print(Symbol.objects.filter(active=True).count())")
        for args in (["migrate", "-v0"], ["setup_demo"], ["shell", "-c", seed]):
            done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=180)
            if done.returncode:
                raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        count = int(done.stdout.split()[-1])
        if count != SYMBOLS:
            raise RuntimeError(f"the benchmark market needs {SYMBOLS} active symbols, the database has {count}")
        self.db_ready = True


@dataclass
class Deployment:
    """A deployment ready for load: where the clients connect, the app server processes (their CPU
    and RSS are summed), the proxy in front if any (its CPU is reported apart), all stopped after
    the run; ``info`` goes into the run's record."""

    url: str
    servers: list[Proc]
    proxy: Proc | None = None
    info: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)  # the app servers' /metrics (ours only)
    others: list[Proc] = field(default_factory=list)  # started for the run, stopped after it (busy loops)

    @property
    def procs(self) -> list[Proc]:
        """Front to back: the proxy first (clients go), then the app servers, then the rest."""
        return [*([self.proxy] if self.proxy else []), *self.servers, *self.others]


HUB_COUNTERS = ("ticker_clients_held_total", "ticker_clients_caught_up_total", "ticker_batches_conflated_total",
                "ticker_resyncs_total", "ticker_clients_dropped_total", "ticker_frames_sent_total")


def hub_counts(urls: list[str]) -> dict[str, float]:
    """The hub's own counters, summed over the app servers' ``/metrics``: what the server did
    (held, caught up, conflated) next to what the load client saw."""
    totals: dict[str, float] = {}
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            metric = name.split("{")[0]
            if metric in HUB_COUNTERS:
                key = metric.removeprefix("ticker_").removesuffix("_total")
                if "{" in name:
                    key += "." + name.split('"')[1]
                totals[key] = totals.get(key, 0) + float(value)
    return totals


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKER_", "CHANNEL_LAYER", "DATABASE_URL"))}
    env.update(DJANGO_SETTINGS_MODULE="dashboard.settings", PYTHONUNBUFFERED="1")
    return env

