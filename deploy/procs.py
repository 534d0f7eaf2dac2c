"""Processes for the cluster runner, the benchmarks and the tests: spawn with a log, wait until
ready, stop exactly what was started (by pid: SIGTERM, then SIGKILL), and the probes they share.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on loopback that nobody listens on now."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_until(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check()`` until it returns a truthy value; raise ``TimeoutError`` after ``timeout`` seconds
    (with the last exception ``check`` raised as its cause)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}") from exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A started process and its log file; ``stop()`` ends exactly it."""

    def __init__(
        self, name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None, port: int | None = None,
        cwd: Path = ROOT, **popen: Any,
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.extra: dict[str, Any] = {}  # what its starter knows of it (a URL, a second port)
        logdir.mkdir(parents=True, exist_ok=True)
        self.log = logdir / f"{name}.log"
        with open(self.log, "ab") as fh:
            self.popen = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True, **popen
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.popen.send_signal(sig)
            self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> None:
        """``sig`` (SIGTERM), then SIGKILL after ``timeout`` seconds."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def started(proc: Proc, ready: Callable[[], object], timeout: float, what: str) -> Proc:
    """Wait until ``ready()`` holds for a process just spawned; stop it and raise (with its log)
    if it exits or never gets there."""

    def check() -> object:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")
        return ready()

    try:
        wait_until(check, timeout=timeout, what=what)
    except Exception as exc:
        proc.stop()
        raise RuntimeError(f"{what} not ready:\n{proc.tail()}") from exc
    return proc


# A redis-server on loopback that keeps nothing on disk.
REDIS_OPTIONS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


def redis_server() -> str:
    """The redis-server binary (it is also Redis Sentinel: ``redis-server CONF --sentinel``)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: `make test` and `make cluster` install Debian's")
    return exe


def redis_argv(port: int) -> list[str]:
    """A redis-server without persistence on loopback ``port``."""
    return [redis_server(), "--port", str(port), *REDIS_OPTIONS]


def redis_ok(port: int) -> bool:
    """The redis-server on loopback ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False
