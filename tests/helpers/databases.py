"""The two databases the database-touching tests run on, and how they reach the one under test."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import pytest

from tests.helpers.postgres import create_database
from tests.helpers.procs import django_env
from tests.helpers.sites import prepared_env

# PostgreSQL is a real server started for the session: its cases are integration tests.
DATABASES = ("sqlite", pytest.param("postgres", marks=pytest.mark.integration))
_site_databases = count(1)


class DatabaseUnderTest:
    """A database router that sends every query to the database the running test is on."""

    alias = "default"

    def db_for_read(self, model, **hints) -> str:
        return DatabaseUnderTest.alias

    def db_for_write(self, model, **hints) -> str:
        return DatabaseUnderTest.alias

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True

    def allow_migrate(self, db, app_label, **hints) -> bool:
        return True


def site_env(request: pytest.FixtureRequest, database: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a server on a fresh copy of the seeded ``database`` (sqlite or postgres)."""
    if database == "sqlite":
        return prepared_env(request.getfixturevalue("seeded_database"), tmp, **extra)
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("seeded_postgres")
    url = create_database(server, f"site{next(_site_databases)}", template=template)
    return django_env(TICKER_VAR_DIR=str(tmp / "var"), DATABASE_URL=url, DJANGO_SUPERUSER_PASSWORD="test-password",
                      **extra)
