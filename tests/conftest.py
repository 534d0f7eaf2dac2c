"""Shared fixtures: the in-memory layer for unit tests, real processes for integration tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from channels.layers import channel_layers

from tests.servers import Proc, django_env, manage, start_daphne, start_feed, start_redis


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Iterator[None]:
    """Each test (and its event loop) gets new channel-layer instances."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
async def runtime(db):
    """This loop's ticker runtime (hub + embedded feed) on the in-memory layer, stopped afterwards."""
    from ticker import runtime as rt
    from ticker.seed import seed_symbols

    await _sync(seed_symbols)
    started = await rt.ensure_started()
    yield started
    await rt.stop()


async def _sync(fn, *args):
    from asgiref.sync import sync_to_async

    return await sync_to_async(fn)(*args)


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


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory) -> Path:
    """A SQLite file migrated and seeded once (`migrate`, `setup_demo`); sites copy it."""
    tmp = tmp_path_factory.mktemp("seed")
    env = database_env(tmp)
    manage(["migrate", "-v0"], env)
    manage(["setup_demo"], env)
    return tmp / "db.sqlite3"


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


@contextmanager
def embedded(seeded: Path, tmp: Path, server: str = "daphne", **extra: str) -> Iterator[Site]:
    """One app server in the embedded mode: SQLite, in-memory layer, feed in process, no Redis."""
    env = prepared_env(seeded, tmp, TICKER_FEED_RATE="100", **extra)
    web = start_daphne(tmp / "logs", env, server=server)
    try:
        yield Site(f"http://127.0.0.1:{web.port}", env, {"web": web}, tmp / "logs")
    finally:
        web.stop()


@pytest.fixture(scope="module")
def embedded_site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    """daphne with its fast path (the default)."""
    with embedded(seeded_database, tmp_path_factory.mktemp("embedded"), TICKER_SOCKET_SNDBUF="16384") as site:
        yield site


@pytest.fixture(scope="module", params=["daphne-asgi", "uvicorn"])
def other_embedded_site(request, tmp_path_factory, seeded_database) -> Iterator[Site]:
    """The other ways to serve: daphne with every send through ASGI, and uvicorn."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "uvicorn":
        with embedded(seeded_database, tmp, server="uvicorn") as site:
            yield site
    else:
        with embedded(seeded_database, tmp, TICKER_DAPHNE_FAST_PATH="0") as site:
            yield site


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[Proc]:
    """One real redis-server for tests that need Redis but not a whole site."""
    proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield proc
    proc.stop()


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


@pytest.fixture(scope="module")
def redis_site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    """Two daphne processes on one real Redis, fed by runfeed."""
    with scaled_site(seeded_database, tmp_path_factory.mktemp("scaled")) as site:
        yield site
