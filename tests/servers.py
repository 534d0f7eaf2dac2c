"""Real processes for integration tests: redis-server, daphne, runfeed, on free loopback ports.

Each helper starts one process, waits until it answers, and returns a handle whose ``stop()``
ends exactly that process (by pid). Fixtures in ``conftest.py`` use them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``check()`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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


def _spawn(
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
    proc = _spawn(
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


def start_daphne(logdir: Path, env: dict[str, str], name: str = "daphne", server: str = "daphne") -> Proc:
    """An app server (daphne unless ``server`` says uvicorn) through ``python -m dashboard.serve``."""
    port = free_port()
    proc = _spawn(
        f"{name}-{port}",
        [PYTHON, "-m", "dashboard.serve", "--server", server, "--port", str(port)],
        logdir,
        env=env,
        port=port,
    )

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.output()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status == 200

    return started(proc, ready, 30, f"{name} on {port}")


def start_feed(logdir: Path, env: dict[str, str], *args: str, name: str = "feed") -> Proc:
    return _spawn(name, [PYTHON, "manage.py", "runfeed", *args], logdir, env=env)


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
    proc = _spawn(f"nginx-{port}", cluster.nginx_argv(prefix, conf), logdir, port=port)

    def ready() -> bool:
        if not proc.alive():
            errors = prefix / "nginx-error.log"
            raise RuntimeError(f"nginx exited:\n{proc.output()}\n{errors.read_text() if errors.exists() else ''}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return started(proc, ready, 10, f"nginx on {port}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL from Debian's packages


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` (Debian keeps initdb and postgres there)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs Debian's postgresql")
    return found[-1].parent


def postgres_user() -> tuple[int, int] | None:
    """As root, the (uid, gid) to run PostgreSQL as (it refuses to run as root): the
    ``postgres`` account when it exists, else ``nobody``. None when not root."""
    import pwd

    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists")


def start_postgres(logdir: Path, datadir: Path, user: str = "ticker") -> Proc:
    """A throwaway PostgreSQL cluster in ``datadir`` on a free loopback port, trusting local
    connections for ``user`` (its superuser), its unix socket in ``datadir``. ``extra["url"]``
    is a ``DATABASE_URL`` for the ``postgres`` database; ``database_url(proc, name)`` for others.
    As root the cluster runs as ``postgres_user()``, so ``datadir`` must be reachable by it."""
    bindir = postgres_bin_dir()
    owner = postgres_user()
    datadir.mkdir(parents=True, exist_ok=True)
    as_owner: dict = {}
    if owner is not None:
        os.chown(datadir, *owner)
        as_owner = {"user": owner[0], "group": owner[1], "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    pgdata = datadir / "data"
    done = subprocess.run(
        [str(bindir / "initdb"), "-D", str(pgdata), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
        cwd=datadir, env=env, capture_output=True, text=True, timeout=120, **as_owner,
    )
    if done.returncode:
        raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    port = free_port()
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"postgres-{port}.log"
    with open(log, "wb") as fh:
        # fsync off and a small footprint: a test database, thrown away afterwards.
        popen = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
             "-k", str(datadir), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=fh, stderr=subprocess.STDOUT, cwd=datadir, env=env, start_new_session=True, **as_owner,
        )
    proc = Proc(f"postgres-{port}", popen, log, port, {"user": user, "url": f"postgres://{user}@127.0.0.1:{port}/postgres"})

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"postgres exited:\n{proc.output()}")
        done = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", user],
                              capture_output=True, timeout=10)
        return done.returncode == 0

    return started(proc, ready, 30, f"postgres on {port}")


def stop_postgres(proc: Proc) -> None:
    """PostgreSQL's fast shutdown (SIGINT: open sessions are ended), by pid."""
    if proc.alive():
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def database_url(proc: Proc, name: str) -> str:
    return f"postgres://{proc.extra['user']}@127.0.0.1:{proc.port}/{name}"


def create_database(proc: Proc, name: str, template: str | None = None) -> str:
    """``CREATE DATABASE name`` (a copy of ``template`` when given) on that server; its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(proc.extra["url"], autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)
    return database_url(proc, name)


# ---------------------------------------------------------------------------------------------
# nginx with TLS and per-address limits


def start_nginx_tls(logdir: Path, upstreams: list[str], static_root: Path, limits=None, tls_dir: Path | None = None,
                    name: str = "nginx") -> Proc:
    """nginx from the same template as ``start_nginx``, with per-address ``limits``
    (``deploy.cluster.Limits``; none when None) and an https listener on a second free port
    with a self-signed certificate made in ``tls_dir`` (``extra["https_port"]``, ``extra["cert"]``)."""
    from deploy import cluster

    port, https_port = free_port(), free_port()
    prefix = logdir / f"{name}-{port}"
    tls = None
    extra: dict = {}
    if tls_dir is not None:
        cert, key = cluster.make_self_signed_certificate(tls_dir)
        tls = cluster.TLS(f"127.0.0.1:{https_port}", cert, key)
        extra = {"https_port": https_port, "cert": cert}
    conf = cluster.write_nginx_conf(
        prefix, listen=f"127.0.0.1:{port}", upstreams=upstreams, static_root=static_root, log_dir=prefix,
        limits=limits or cluster.NO_LIMITS, tls=tls,
    )
    proc = _spawn(f"{name}-{port}", cluster.nginx_argv(prefix, conf), logdir, port=port)
    proc.extra.update(extra, error_log=prefix / "nginx-error.log")

    def ready() -> bool:
        if not proc.alive():
            errors = prefix / "nginx-error.log"
            raise RuntimeError(f"nginx exited:\n{proc.output()}\n{errors.read_text() if errors.exists() else ''}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return started(proc, ready, 10, f"nginx on {port}")
