"""Faults with real processes: Redis dies and comes back, the feed is killed and restarted.

Clients stay connected to daphne throughout; they must end up with correct, fresh prices.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.admin import AdminClient
from tests.helpers.clients import Ws, get_json
from tests.helpers.figures import figure
from tests.helpers.postgres import create_database, start_postgres, stop_postgres
from tests.helpers.procs import django_env, manage, start_daphne, start_feed, start_redis
from tests.helpers.sites import Site, scaled_site
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path, seeded_database):
    """A scaled site of its own (one daphne): these tests break it."""
    with scaled_site(seeded_database, tmp_path, webs=("web",)) as site:
        yield site


async def subscribed(site: Site) -> tuple[Ws, dict]:
    ws = await Ws.open(site.ws_url)
    await ws.send({"op": "sub", "symbols": "*"})
    return ws, await ws.until(lambda f: f["t"] == "snap")


async def test_redis_restart_resyncs_connected_clients(site):
    ws, _ = await subscribed(site)
    before = await ws.until(lambda f: f["t"] == "q")
    redis = site.procs["redis"]
    redis.kill()
    status, health = await asyncio.to_thread(get_json, site.url + "/healthz")
    assert status == 503 and health["layer"] == "unreachable"
    # An outage the feed feels: it keeps its changes for later, the hub keeps its clients.
    await eventually(lambda: "not published" in site.procs["feed"].output(), 10, 0.05, "the feed to miss a batch")
    site.procs["redis"] = start_redis(site.logdir, port=redis.port)
    # The server rejoins its groups and sends a full snapshot; the feed rewrote every row.
    snap = await ws.until(lambda f: f["t"] == "snap", timeout=10)
    assert snap["seq"] > before["seq"] and len(snap["q"]) == 42
    following = await ws.until(lambda f: f["t"] == "q", timeout=5)
    assert following["seq"] > snap["seq"]
    await ws.close()
    assert site.procs["feed"].alive() and site.procs["web"].alive()


async def test_a_killed_feed_is_noticed_and_its_successor_starts_a_new_epoch(site):
    ws, _ = await subscribed(site)
    site.procs["feed"].kill()
    await eventually(
        lambda: asyncio.to_thread(lambda: get_json(site.url + "/healthz")[0] == 503), 10, 0.25,
        "healthz to say degraded",
    )
    site.procs["feed"] = start_feed(site.logdir, site.env, name="feed2")
    snap = await ws.until(lambda f: f["t"] == "snap", timeout=15)
    assert len(snap["q"]) == 42
    fresh = await Ws.open(site.ws_url)
    assert fresh.hello["epoch"] != ws.hello["epoch"]  # clients that resume with the old one get a snap
    await fresh.send({"op": "resume", "epoch": ws.hello["epoch"], "seq": 1, "symbols": "*"})
    assert (await fresh.until(lambda f: f["t"] in ("snap", "q")))["t"] == "snap"
    await ws.close()
    await fresh.close()


async def test_a_standby_feed_takes_over_within_3_s_and_clients_resync(site):
    standby = start_feed(site.logdir, site.env, name="standby")
    site.procs["standby"] = standby
    await eventually(lambda: "standby" in standby.output(), 15, 0.05, "the second feed to wait as a standby")
    ws, snap = await subscribed(site)
    site.procs["feed"].kill()
    killed = time.monotonic()
    fresh = await ws.until(lambda f: f["t"] == "snap" and f["epoch"] != snap["epoch"], timeout=10)
    figure("standby feed: clients resynced after the active one is killed", time.monotonic() - killed,
           target=3.0, limit=10.0)
    assert len(fresh["q"]) == 42
    following = await ws.until(lambda f: f["t"] == "q", timeout=3)
    assert following["seq"] > fresh["seq"]
    await ws.close()


@pytest.fixture
def postgres_site(tmp_path):
    """An embedded server on a PostgreSQL of its own, which the test stops and starts again."""
    import tempfile

    logs = tmp_path / "logs"
    datadir = Path(tempfile.mkdtemp(prefix="ticker-pg-"))  # reachable by the postgres user, as root
    procs = {"postgres": start_postgres(logs, datadir)}
    try:
        url = create_database(procs["postgres"], "ticker")
        env = django_env(TICKER_VAR_DIR=str(tmp_path / "var"), DATABASE_URL=url,
                         DJANGO_SUPERUSER_PASSWORD="test-password", TICKER_FEED_RATE="100")
        manage(["migrate", "-v0"], env)
        manage(["setup_demo"], env)
        procs["web"] = start_daphne(logs, env)
        yield Site(f"http://127.0.0.1:{procs['web'].port}", env, procs, logs), datadir
    finally:
        if "web" in procs:
            procs["web"].stop()
        stop_postgres(procs["postgres"])
        shutil.rmtree(datadir, ignore_errors=True)


async def test_the_database_away_for_a_while_then_back_loses_nothing_saved(postgres_site):
    site, datadir = postgres_site
    admin = AdminClient(site.url)
    await asyncio.to_thread(admin.add_symbol, "KEPT", "Saved before the outage", "10.00")
    ws, _ = await subscribed(site)
    postgres = site.procs["postgres"]
    stop_postgres(postgres)
    status, health = await asyncio.to_thread(get_json, site.url + "/healthz")
    assert status == 503 and health["database"] == "unreachable"
    # Quotes do not touch the database: the stream goes on meanwhile.
    first = await ws.until(lambda f: f["t"] == "q")
    assert (await ws.until(lambda f: f["t"] == "q"))["seq"] > first["seq"]
    site.procs["postgres"] = start_postgres(site.logdir, datadir, port=postgres.port)
    await eventually(lambda: asyncio.to_thread(lambda: get_json(site.url + "/healthz")[0] == 200), 15, 0.2,
                     "healthz to be ok again")
    assert "KEPT" in await asyncio.to_thread(admin.get, "/admin/ticker/symbol/")  # the session survived too
    await asyncio.to_thread(admin.add_symbol, "AFTER", "Saved after the outage", "11.00")
    sym = await ws.until(lambda f: f["t"] == "sym" and any(s["s"] == "AFTER" for s in f["symbols"]), timeout=5)
    assert {"KEPT", "AFTER"} <= {s["s"] for s in sym["symbols"]}
    await ws.close()
