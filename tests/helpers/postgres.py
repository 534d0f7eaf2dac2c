"""A real PostgreSQL for the tests, from Debian's packages: a throwaway cluster on a free
loopback port, stopped by pid."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Any

from deploy.procs import Proc, free_port, started


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` (Debian keeps initdb and postgres there)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs Debian's postgresql")
    return found[-1].parent


def postgres_user() -> tuple[int, int] | None:
    """As root, the (uid, gid) to run PostgreSQL as (it refuses to run as root): the ``postgres``
    account when it exists, else ``nobody``. None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists")


def start_postgres(logdir: Path, datadir: Path, user: str = "ticker", port: int | None = None) -> Proc:
    """A throwaway PostgreSQL cluster in ``datadir`` on ``port`` (a free loopback one when None),
    trusting local connections for ``user`` (its superuser), its unix socket in ``datadir``; a
    cluster already there is started again as it was. ``extra["url"]`` is a ``DATABASE_URL`` for
    the ``postgres`` database; ``database_url(proc, name)`` for others. As root the cluster runs
    as ``postgres_user()``, so ``datadir`` must be reachable by it."""
    bindir = postgres_bin_dir()
    owner = postgres_user()
    datadir.mkdir(parents=True, exist_ok=True)
    as_owner: dict[str, Any] = {}
    if owner is not None:
        os.chown(datadir, *owner)
        as_owner = {"user": owner[0], "group": owner[1], "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    pgdata = datadir / "data"
    done = subprocess.run(["true"]) if (pgdata / "PG_VERSION").exists() else subprocess.run(
        [str(bindir / "initdb"), "-D", str(pgdata), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
        cwd=datadir, env=env, capture_output=True, text=True, timeout=120, **as_owner,
    )
    if done.returncode:
        raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
    port = port or free_port()
    # fsync off and a small footprint: a test database, thrown away afterwards.
    argv = [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1", "-k", str(datadir),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200", "-c", "shared_buffers=32MB"]
    proc = Proc(f"postgres-{port}", argv, logdir, env=env, port=port, cwd=datadir, **as_owner)
    proc.extra.update(user=user, url=f"postgres://{user}@127.0.0.1:{port}/postgres")

    def ready() -> bool:
        check = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", user]
        return subprocess.run(check, capture_output=True, timeout=10).returncode == 0

    return started(proc, ready, 30, f"postgres on {port}")


def stop_postgres(proc: Proc) -> None:
    """PostgreSQL's fast shutdown (SIGINT: open sessions are ended), by pid."""
    proc.stop(timeout=20, sig=signal.SIGINT)


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
