"""Real processes for integration tests: redis-server, daphne, runfeed, nginx, on free loopback ports.

Each helper starts one process, waits until it answers, and returns a handle whose ``stop()``
ends exactly that process (by pid).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    """A started process with its log file."""

    name: str
    popen: subprocess.Popen
    log: Path
    port: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def started(proc: Proc, ready, timeout: float, what: str) -> Proc:
    """Wait until ``ready()`` holds for a process just spawned; stop it and raise if it never does."""
    try:
        wait_until(ready, timeout=timeout, what=what)
    except Exception:
        proc.stop()
        raise
    return proc


def spawn(
    name: str, args: list[str], logdir: Path, env: dict[str, str] | None = None, port: int | None = None
) -> Proc:
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 (closed with the process)
    popen = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
    fh.close()
    return Proc(name, popen, log, port)


def start_redis(logdir: Path, port: int | None = None) -> Proc:
    """A redis-server without persistence on ``port`` (a free one when None)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
    port = port or free_port()
    proc = spawn(
        f"redis-{port}",
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        logdir,
        port=port,
    )

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    wait_until(ready, what=f"redis on {port}")
    return proc


def django_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKER_", "CHANNEL_LAYER", "DATABASE_URL"))}
    env.update({"DJANGO_SETTINGS_MODULE": "dashboard.settings", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def manage(args: list[str], env: dict[str, str]) -> str:
    """Run a management command to completion and return its output."""
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def start_daphne(
    logdir: Path, env: dict[str, str], name: str = "daphne", server: str = "daphne",
    tls: tuple[Path, Path] | None = None, context: ssl.SSLContext | None = None,
) -> Proc:
    """An app server (daphne unless ``server`` says uvicorn) through ``python -m dashboard.serve``;
    with ``tls`` (certificate, key) it serves HTTPS, checked with ``context``."""
    port = free_port()
    argv = [PYTHON, "-m", "dashboard.serve", "--server", server, "--port", str(port)]
    if tls:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    proc = spawn(f"{name}-{port}", argv, logdir, env=env, port=port)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz"

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.output()}")
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:
            return resp.status == 200

    return started(proc, ready, 30, f"{name} on {port}")


def start_feed(logdir: Path, env: dict[str, str], *args: str, name: str = "feed") -> Proc:
    return spawn(name, [PYTHON, "manage.py", "runfeed", *args], logdir, env=env)


def start_nginx(logdir: Path, upstreams: list[str], static_root: Path, port: int | None = None) -> Proc:
    """nginx on ``port`` (a free one when None) in front of app servers at ``upstreams``
    (``host:port`` or ``unix:/path``), configured from the template `make cluster` renders
    (deploy/nginx/nginx.conf.in); its files live under ``logdir``."""
    from deploy import cluster

    port = port or free_port()
    prefix = logdir / f"nginx-{port}"
    conf = cluster.write_nginx_conf(
        prefix, listen=f"127.0.0.1:{port}", upstreams=upstreams, static_root=static_root, log_dir=prefix
    )
    proc = spawn(f"nginx-{port}", cluster.nginx_argv(prefix, conf), logdir, port=port)

    def ready() -> bool:
        if not proc.alive():
            errors = prefix / "nginx-error.log"
            raise RuntimeError(f"nginx exited:\n{proc.output()}\n{errors.read_text() if errors.exists() else ''}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return started(proc, ready, 10, f"nginx on {port}")
