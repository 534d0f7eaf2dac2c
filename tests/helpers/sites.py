"""Deployments for tests, built from real processes: embedded, scaled (Redis + runfeed), and
the pieces of the cluster behind nginx."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy import cluster
from tests.helpers.procs import Proc, django_env, start_daphne, start_feed, start_redis, started


@dataclass
class Site:
    """A running deployment for a test: its base URL, processes and environment."""

    url: str
    env: dict[str, str]
    procs: dict[str, Proc]
    logdir: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/quotes/"


def database_env(tmp: Path, **extra: str) -> dict[str, str]:
    return django_env(
        TICKER_VAR_DIR=str(tmp / "var"),
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        DJANGO_SUPERUSER_PASSWORD="test-password",
        **extra,
    )


def prepared_env(seeded: Path, tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a copy of the seeded database under ``tmp``."""
    shutil.copyfile(seeded, tmp / "db.sqlite3")
    return database_env(tmp, **extra)


# The ways to serve the application: daphne with its fast path (the default), daphne with every
# send through ASGI, and uvicorn: the server's name and the environment that makes each.
SERVERS: dict[str, tuple[str, dict[str, str]]] = {
    "daphne": ("daphne", {}), "daphne-asgi": ("daphne", {"TICKER_DAPHNE_FAST_PATH": "0"}), "uvicorn": ("uvicorn", {}),
}


@contextmanager
def embedded_as(way: str, seeded: Path, tmp: Path, **extra: str) -> Iterator[Site]:
    """``embedded``, served one of the ``SERVERS`` ways."""
    server, env = SERVERS[way]
    with embedded(seeded, tmp, server=server, **{**env, **extra}) as site:
        yield site


@contextmanager
def embedded(seeded: Path, tmp: Path, server: str = "daphne", **extra: str) -> Iterator[Site]:
    """One app server in the embedded mode: SQLite, in-memory layer, feed in process, no Redis."""
    env = prepared_env(seeded, tmp, **{"TICKER_FEED_RATE": "100", **extra})
    web = start_daphne(tmp / "logs", env, server=server)
    try:
        yield Site(f"http://127.0.0.1:{web.port}", env, {"web": web}, tmp / "logs")
    finally:
        web.stop()


@contextmanager
def scaled_site(seeded: Path, tmp: Path, webs: tuple[str, ...] = ("web1", "web2")) -> Iterator[Site]:
    """The scaled mode on one machine: redis-server, one runfeed, daphne processes named ``webs``."""
    logs = tmp / "logs"
    redis = start_redis(logs)
    env = prepared_env(seeded, tmp, CHANNEL_LAYER_URL=f"redis://127.0.0.1:{redis.port}/0", TICKER_FEED_RATE="100")
    procs = {"redis": redis}
    try:
        procs["feed"] = start_feed(logs, env)
        for name in webs:
            procs[name] = start_daphne(logs, env, name=name)
        yield Site(f"http://127.0.0.1:{procs[webs[0]].port}", env, procs, logs)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()


@dataclass
class ClusterSite(Site):
    """A site behind nginx: also the address of each app server."""

    addresses: dict[str, str]


def start_app_server(logdir: Path, env: dict[str, str], name: str, address: str, log_name: str = "") -> Proc:
    """One app server as `make cluster` runs it (dashboard.serve --proxy-headers, no static)."""
    Path(address.removeprefix("unix:")).unlink(missing_ok=True)  # a killed server leaves it behind
    proc = Proc(log_name or name, cluster.app_server_argv(address), logdir, env=cluster.app_env(env, name))

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.output()}")
        return cluster.healthy(address)

    return started(proc, ready, 30, f"{name} on {address}")


def wait_for_log(proc: Proc, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while text not in proc.output():
        if time.monotonic() > deadline or not proc.alive():
            return False
        time.sleep(0.05)
    return True
