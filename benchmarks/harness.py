"""What every benchmark path shares: the market, the processes the runner starts (each stopped by
its pid), readiness probes and the session's scratch directory and database."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
EXTRA_SYMBOLS = ROOT / "benchmarks" / "extra_symbols.csv"

SYMBOLS, RATE, BATCH_MS = 50, 200, 100  # the market, for every path


class Proc:
    """A process this runner started, with its log; ``stop()`` ends exactly it (by pid)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.argv = argv
        self.log = logdir / f"{name}.log"
        with open(self.log, "ab") as fh:
            self.popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(proc: Proc, check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    """Poll ``check`` until it holds; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{proc.tail()}")
        time.sleep(0.2)


def redis_ready(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return resp.status == 200


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

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env or base_env(), self.logdir)
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
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        proc = self.start(f"redis-{port}", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                            "--appendonly", "no"])
        wait_ready(proc, lambda: redis_ready(port), f"redis on {port}")
        return proc, f"redis://127.0.0.1:{port}/0"

    def ours_env(self, redis_url: str) -> dict[str, str]:
        env = base_env()
        env.update(CHANNEL_LAYER_URL=redis_url, DATABASE_URL=f"sqlite:///{self.tmp / 'db.sqlite3'}",
                   TICKER_VAR_DIR=str(self.tmp / "var"), DJANGO_SUPERUSER_PASSWORD="x", TICKER_LOG_LEVEL="WARNING")
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

    @property
    def procs(self) -> list[Proc]:
        """Front to back: the proxy first (clients go), then the app servers."""
        return [*([self.proxy] if self.proxy else []), *self.servers]


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKER_", "CHANNEL_LAYER", "DATABASE_URL"))}
    env.update(DJANGO_SETTINGS_MODULE="dashboard.settings", PYTHONUNBUFFERED="1")
    return env

