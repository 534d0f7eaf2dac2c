"""Real processes for integration tests: redis-server, daphne or uvicorn, runfeed, nginx, on free
loopback ports, through the toolkit the cluster runner and the benchmarks use (``deploy.procs``).

Each helper starts one process, waits until it answers, and returns a ``Proc`` whose ``stop()``
ends exactly that process (by pid).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path

from deploy import cluster
from deploy.procs import PYTHON, ROOT, Proc, free_port, redis_argv, redis_ok, started

__all__ = ["PYTHON", "ROOT", "Proc", "django_env", "free_port", "manage", "start_daphne", "start_feed",
           "start_nginx", "start_redis", "started"]


def start_redis(logdir: Path, port: int | None = None) -> Proc:
    """A redis-server without persistence on ``port`` (a free one when None)."""
    port = port or free_port()
    proc = Proc(f"redis-{port}", redis_argv(port), logdir, port=port)
    return started(proc, lambda: redis_ok(port), 15, f"redis on {port}")


def django_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKER_", "CHANNEL_LAYER", "DATABASE_URL"))}
    # Every test client comes from loopback: the per-address caps would count them all as one.
    env.update({"DJANGO_SETTINGS_MODULE": "dashboard.settings", "PYTHONUNBUFFERED": "1",
                "TICKER_LIMIT_EXEMPT": "127.0.0.0/8,::1"})
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
    proc = Proc(f"{name}-{port}", argv, logdir, env=env, port=port)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz"

    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:
            return bool(resp.status == 200)

    return started(proc, ready, 30, f"{name} on {port}")


def start_feed(logdir: Path, env: dict[str, str], *args: str, name: str = "feed") -> Proc:
    return Proc(name, [PYTHON, "manage.py", "runfeed", *args], logdir, env=env)


def start_nginx(
    logdir: Path, upstreams: list[str], static_root: Path, port: int | None = None, *,
    limits: cluster.Limits | None = None, tls_dir: Path | None = None, name: str = "nginx",
) -> Proc:
    """nginx on ``port`` (a free one when None) in front of app servers at ``upstreams``
    (``host:port`` or ``unix:/path``), configured from the template `make cluster` renders
    (deploy/nginx/nginx.conf.in); its files live under ``logdir``. ``limits``: per-address caps
    (none when None). ``tls_dir``: also an https listener on a second free port with a
    self-signed certificate made there (``extra["https_port"]``, ``extra["cert"]``)."""
    port = port or free_port()
    prefix = logdir / f"{name}-{port}"
    tls = None
    extra: dict[str, object] = {"error_log": prefix / "nginx-error.log"}
    if tls_dir is not None:
        https_port = free_port()
        cert, key = cluster.make_self_signed_certificate(tls_dir)
        tls = cluster.TLS(f"127.0.0.1:{https_port}", cert, key)
        extra.update(https_port=https_port, cert=cert)
    conf = cluster.write_nginx_conf(
        prefix, listen=f"127.0.0.1:{port}", upstreams=upstreams, static_root=static_root, log_dir=prefix,
        limits=limits or cluster.NO_LIMITS, tls=tls,
    )
    proc = Proc(f"{name}-{port}", cluster.nginx_argv(prefix, conf), logdir, port=port)
    proc.extra.update(extra)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return started(proc, ready, 10, f"nginx on {port}")
