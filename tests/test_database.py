"""The schema on both databases the project runs on: SQLite (`make run`) and PostgreSQL (the
deployment), through real ``manage.py`` processes; and the in-process switch between them."""

from __future__ import annotations

import itertools

import pytest
from django.db import connections, router

from tests.helpers.databases import DATABASES
from tests.helpers.postgres import create_database
from tests.helpers.procs import django_env, manage
from tests.helpers.sites import database_env

pytestmark = pytest.mark.integration  # each test runs manage.py or a server

_names = itertools.count(1)


@pytest.fixture(params=DATABASES)
def empty_database(request, tmp_path) -> dict[str, str]:
    """The environment of a process on a new, empty database of each kind."""
    if request.param == "sqlite":
        return database_env(tmp_path)
    server = request.getfixturevalue("postgres_server")
    return django_env(TICKER_VAR_DIR=str(tmp_path / "var"),
                      DATABASE_URL=create_database(server, f"migrations{next(_names)}"))


def test_migrations_apply_unapply_and_apply_again(empty_database):
    manage(["migrate", "-v0"], empty_database)
    plan = manage(["showmigrations", "--plan"], empty_database)
    assert "[ ]" not in plan and "[X]  ticker.0001_initial" in plan and "[X]  axes." in plan
    manage(["migrate", "ticker", "zero", "-v0"], empty_database)
    assert "[ ] 0001_initial" in manage(["showmigrations", "ticker"], empty_database)
    manage(["migrate", "-v0"], empty_database)
    out = manage(["setup_demo"], empty_database)
    assert "42 created" in out


def test_the_models_match_the_migrations(tmp_path):
    manage(["makemigrations", "--check", "--dry-run"], database_env(tmp_path))


@pytest.mark.django_db(databases="__all__")
def test_the_orm_queries_the_database_under_test(database):
    from ticker.models import Symbol

    alias = router.db_for_write(Symbol)
    assert connections[alias].vendor == {"sqlite": "sqlite", "postgres": "postgresql"}[database]
    Symbol.objects.create(ticker="ZZZ", name="Z", prev_close=1)
    assert Symbol.objects.using(alias).filter(ticker="ZZZ").exists()
