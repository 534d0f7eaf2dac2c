"""Shared fixtures: the in-memory layer for unit tests, real processes for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.layers import channel_layers

from tests.helpers.procs import Proc, manage, start_redis
from tests.helpers.sites import Site, database_env, embedded, scaled_site


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
async def services(db):
    """This test's ticker services (hub + embedded feed) on the in-memory layer, stopped afterwards."""
    from dashboard.services import Services
    from ticker.seed import seed_symbols

    await _sync(seed_symbols)
    services = Services.from_settings()
    await services.ready()
    yield services
    await services.stop()


@pytest.fixture
def application(services):
    """The whole ASGI application, serving with this test's services."""
    from dashboard.asgi import make_application

    return make_application(services)


async def _sync(fn, *args):
    from asgiref.sync import sync_to_async

    return await sync_to_async(fn)(*args)


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory) -> Path:
    """A SQLite file migrated and seeded once (`migrate`, `setup_demo`); sites copy it."""
    tmp = tmp_path_factory.mktemp("seed")
    env = database_env(tmp)
    manage(["migrate", "-v0"], env)
    manage(["setup_demo"], env)
    return tmp / "db.sqlite3"


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


@pytest.fixture(scope="module")
def redis_site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    """Two daphne processes on one real Redis, fed by runfeed."""
    with scaled_site(seeded_database, tmp_path_factory.mktemp("scaled")) as site:
        yield site
