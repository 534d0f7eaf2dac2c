"""Shared fixtures: the in-memory layer for unit tests, real processes for integration tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.layers import channel_layers

from tests.helpers.databases import DATABASES, DatabaseUnderTest
from tests.helpers.procs import Proc, django_env, manage, start_redis
from tests.helpers.sites import SERVERS, Site, database_env, embedded, embedded_as, scaled_site

PROCESS_MARKERS = ("integration", "browser")


PROCESS_MARKERS = ("integration", "browser")
# Fixtures that start processes; every fixture that starts a site or server builds on one.
PROCESS_FIXTURES = frozenset({"seeded_database", "redis_server", "postgres_server"})


def _starts_processes(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("database") == "postgres"
    return on_postgres or not PROCESS_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that needs a process-starting fixture without saying so."""
    unmarked = [item.nodeid for item in items
                if _starts_processes(item) and not any(item.get_closest_marker(m) for m in PROCESS_MARKERS)]
    if unmarked:
        raise pytest.UsageError("these tests start processes; mark them integration: " + ", ".join(unmarked))


@pytest.fixture(autouse=True)
def figures_of_this_test(request) -> None:
    """``figure`` records into this test's user properties, which its report carries."""
    from tests.helpers import figures

    figures.measuring = request.node.user_properties


def pytest_runtest_logreport(report) -> None:
    if report.when == "teardown":  # the last report of a test: every figure it recorded
        from tests.helpers.figures import collect

        collect(report.user_properties)


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.helpers.figures import summary

    lines = summary()
    if lines:
        terminalreporter.section("measured figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def processes_only_where_marked(request, monkeypatch) -> None:
    """A test that starts a process must say so (``integration`` or ``browser``), so that
    ``make test-fast`` (``-m "not integration and not browser"``) starts none: elsewhere,
    starting one fails the test with the marker to add."""
    if any(request.node.get_closest_marker(name) for name in PROCESS_MARKERS):
        return
    import subprocess

    def refuse(self, args, *rest, **kwargs) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process ({args!r}): mark it integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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
    with embedded_as(request.param, seeded_database, tmp_path_factory.mktemp(request.param)) as site:
        yield site


@pytest.fixture(scope="module", params=list(SERVERS))
def any_server_site(request, tmp_path_factory, seeded_database) -> Iterator[Site]:
    """An embedded site, once for each way to serve (``SERVERS``)."""
    with embedded_as(request.param, seeded_database, tmp_path_factory.mktemp(request.param)) as site:
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


# ---------------------------------------------------------------------------------------------
# PostgreSQL: the deployment's database. Tests that take the ``database`` fixture run once on
# SQLite and once on a real PostgreSQL started from Debian's packages for the session.

@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[Proc]:
    """One real PostgreSQL for the session, on a free loopback port, stopped by pid at the end."""
    import os
    import tempfile

    from tests.helpers.postgres import start_postgres, stop_postgres

    logs = tmp_path_factory.mktemp("postgres")
    # As root the server runs as another user, who cannot enter pytest's private directories:
    # its cluster (and unix socket) then lives in a directory of its own, removed afterwards.
    datadir = Path(tempfile.mkdtemp(prefix="ticker-pg-")) if os.geteuid() == 0 else logs / "cluster"
    proc = start_postgres(logs, datadir)
    try:
        yield proc
    finally:
        stop_postgres(proc)
        if os.geteuid() == 0:
            shutil.rmtree(datadir, ignore_errors=True)


def _wants_postgres(session) -> bool:
    return any(getattr(item, "callspec", None) and item.callspec.params.get("database") == "postgres"
               for item in session.items)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix) -> None:
    """pytest-django's hook before it creates the test databases: when a collected test runs on
    PostgreSQL, add it as the ``postgres`` alias (its test database is made and migrated too)."""
    if not _wants_postgres(request.session):
        return
    import dj_database_url
    from django.conf import settings
    from django.db import connections

    from tests.helpers.postgres import database_url

    server = request.getfixturevalue("postgres_server")
    config = dj_database_url.parse(database_url(server, "ticker"))
    config["TEST"] = {"NAME": "test_ticker"}
    # Django filled in every alias's defaults when it first read DATABASES: fill this one's too.
    filled = connections.configure_settings({"default": dict(settings.DATABASES["default"]), "postgres": config})
    connections.settings["postgres"] = settings.DATABASES["postgres"] = filled["postgres"]


@pytest.fixture(params=DATABASES)
def database(request, settings) -> Iterator[str]:
    """Run the test on SQLite, then on PostgreSQL. In-process tests need
    ``django_db(databases="__all__")``; the ORM's queries go to the one under test."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_test_sessions_ended")
        settings.DATABASE_ROUTERS = ["tests.helpers.databases.DatabaseUnderTest"]
        DatabaseUnderTest.alias = "postgres"
    try:
        yield request.param
    finally:
        DatabaseUnderTest.alias = "default"


@pytest.fixture(scope="session")
def postgres_test_sessions_ended(django_db_setup, postgres_server) -> Iterator[None]:
    """Before pytest-django drops the PostgreSQL test database: end the sessions that async
    tests left open in asgiref's worker thread (DROP DATABASE refuses while any is open)."""
    yield
    import psycopg

    with psycopg.connect(postgres_server.extra["url"], autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = 'test_ticker' AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def seeded_postgres(postgres_server) -> str:
    """A PostgreSQL database migrated and seeded once (``seed``); sites copy it (TEMPLATE)."""
    from tests.helpers.postgres import create_database

    url = create_database(postgres_server, "seed")
    env = django_env(DATABASE_URL=url, DJANGO_SUPERUSER_PASSWORD="test-password")
    manage(["migrate", "-v0"], env)
    manage(["setup_demo"], env)
    return "seed"
