"""The scaled topology for real: nginx (the config `make cluster` renders) in front of two app
servers (``python -m dashboard.serve --proxy-headers``, static files off) on one real Redis, fed
by two ``runfeed`` processes (one active, one hot standby). Clients only ever talk to nginx.

Also the runner behind `make cluster` itself (deploy/cluster.py, everything under one
supervisord): start, rolling restart through supervisorctl with clients connected, a killed
process started again, stop, and nothing left running.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import signal
import ssl
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import cluster
from deploy.control import pid_alive
from deploy.sentinel import RedisSet
from tests.helpers.admin import AdminClient
from tests.helpers.clients import Reconnecting, Ws, connect_all, fetch, get_json, stop_all, wait_resynced
from tests.helpers.figures import figure
from tests.helpers.procs import PYTHON, ROOT, Proc, free_port, start_feed, start_nginx, start_redis
from tests.helpers.sites import ClusterSite, prepared_env, start_app_server, wait_for_log
from tests.helpers.streams import assert_same_stream, q_frames
from tests.helpers.waiting import eventually, wait_until
from ticker.web.health import STALE_FEED_SECONDS

pytestmark = pytest.mark.integration

CLIENTS = 200
RECOVERY_BUDGET = 5.0  # s: every client of a killed worker is back and resumed
FAILOVER_BUDGET = 3.0  # s: the standby feed publishes and clients hold the new epoch
MARKET = "/admin/ticker/market/1/change/"


# The topology, built from the same pieces as `make cluster` (deploy/cluster.py).


@pytest.fixture(scope="module")
def site(tmp_path_factory, seeded_database) -> Iterator[ClusterSite]:
    tmp = tmp_path_factory.mktemp("cluster")
    logs = tmp / "logs"
    procs: dict[str, Proc] = {}
    try:
        procs["redis"] = redis = start_redis(logs)
        static = tmp / "static"
        env = prepared_env(
            seeded_database, tmp, CHANNEL_LAYER_URL=f"redis://127.0.0.1:{redis.port}/0",
            TICKER_FEED_RATE="100", DJANGO_STATIC_ROOT=str(static),
        )
        cluster.collectstatic(env)
        procs["feed1"] = start_feed(logs, env, name="feed1")
        assert wait_for_log(procs["feed1"], ": active, epoch", 15), procs["feed1"].output()
        # The standby: a second runfeed that waits for the lease (it says so in its log).
        procs["feed2"] = start_feed(logs, env, name="feed2")
        assert wait_for_log(procs["feed2"], "standby", 15), "the second runfeed is no standby:\n" + procs[
            "feed2"].output()
        addresses = {name: f"unix:{tmp / f'{name}.sock'}" for name in ("web1", "web2")}
        for name, address in addresses.items():
            procs[name] = start_app_server(logs, env, name, address)
        procs["nginx"] = nginx = start_nginx(logs, list(addresses.values()), static)
        yield ClusterSite(f"http://127.0.0.1:{nginx.port}", env, procs, logs, addresses)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()


def test_page_static_files_and_health_through_nginx(site):
    status, _, page = fetch(site.url + "/")
    assert status == 200 and b"AAPL" in page and b"/static/ticker/board.js" in page
    status, headers, body = fetch(site.url + "/static/ticker/board.js")
    assert status == 200 and body == (ROOT / "ticker/static/ticker/board.js").read_bytes()
    assert "Cross-Origin-Opener-Policy" not in headers and headers["Cache-Control"] == "max-age=3600"  # nginx's
    assert get_json(site.url + "/healthz") == (200, {"status": "ok"})
    status, _ = get_json(site.url + "/internal/status")  # each server's details stay on its host
    assert status == 404
    assert get_json(site.url + "/metrics")[0] == 404


def test_nginx_overwrites_x_forwarded_for(site):
    fetch(site.url + "/api/quotes/?symbols=AAPL&xff-check", {"X-Forwarded-For": "203.0.113.9"})
    logs = site.procs["web1"].output() + site.procs["web2"].output()
    line = next(line for line in logs.splitlines() if "xff-check" in line)
    assert line.startswith("127.0.0.1:") and "203.0.113.9" not in logs


async def test_clients_land_on_both_workers_and_see_the_same_seq_stream(site):
    clients = [await Ws.open(site.ws_url) for _ in range(8)]
    by_node = {ws.hello["node"]: ws for ws in clients}
    assert set(by_node) == {"web1", "web2"}  # least_conn spreads them
    assert len({ws.hello["epoch"] for ws in clients}) == 1
    for ws in by_node.values():
        await ws.send({"op": "sub", "symbols": "*"})
        await ws.until(lambda f: f["t"] == "snap")
    streams = [await q_frames(ws, 10) for ws in by_node.values()]
    for ws in clients:
        await ws.close()
    assert_same_stream(*streams)


async def test_killing_a_worker_its_clients_come_back_and_resume_within_5_s(site):
    clients = await connect_all(site.ws_url, CLIENTS)
    try:
        victims = [c for c in clients if c.node == "web1"]
        assert 40 <= len(victims) <= CLIENTS - 40, f"{len(victims)} of {CLIENTS} on web1"
        await advanced(clients, 3)  # some batches, so resuming has something to skip
        held = {id(c): (c.epoch, c.seq) for c in victims}
        killed = time.monotonic()
        site.procs["web1"].kill(signal.SIGKILL)
        await asyncio.wait_for(
            asyncio.gather(*(wait_resynced(c) for c in victims)), RECOVERY_BUDGET + 5
        )
        times = sorted(c.synced_at - killed for c in victims)
        print(
            f"\n{len(victims)} clients of the killed worker resumed: median {statistics.median(times):.2f} s, "
            f"max {times[-1]:.2f} s after SIGKILL"
        )
        figure("cluster: every client of a killed worker resumed", times[-1], target=RECOVERY_BUDGET,
               limit=RECOVERY_BUDGET + 5)
        flips = [line for line in site.procs["feed1"].output().splitlines() if "stopped:" in line]
        for client in victims:
            op, node, snap = client.syncs[-1]
            # A resume, not a fresh subscription: unless the feed started a new epoch meanwhile,
            # which only a failover may do.
            assert (op, node) == ("resume", "web2"), f"{op} on {node}; the feed meanwhile: {flips}"
            assert snap["epoch"] == held[id(client)][0] and snap["seq"] >= held[id(client)][1]
        survivors = [c for c in clients if c.node == "web2" and c not in victims]
        assert all(not c.dropped_at for c in survivors)
        await advanced(clients, 5)  # every client streams again, so a gap would show
        assert [c.gaps for c in clients if c.gaps] == []  # no batch lost after a resume
        assert [c.errors for c in clients if c.errors] == []
    finally:
        await stop_all(clients)

    # The test restarts the worker; nginx sends new clients to it again.
    site.procs["web1"] = await asyncio.to_thread(
        start_app_server, site.logdir, site.env, "web1", site.addresses["web1"], "web1-restarted"
    )
    async def lands_on_web1() -> bool:
        ws = await Ws.open(site.ws_url)
        await ws.close()
        return ws.hello["node"] == "web1"

    await eventually(lands_on_web1, 5, 0.2, "nginx to send a client to the restarted worker")


async def advanced(clients: list[Reconnecting], batches: int, timeout: float = 10.0) -> None:
    """Wait until every client is synced and has seen ``batches`` more batches than now."""
    start = {id(c): c.seq for c in clients}
    await eventually(
        lambda: all(c.synced.is_set() and c.seq >= start[id(c)] + batches for c in clients), timeout, 0.05,
        f"every client to see {batches} more batches",
    )


async def test_killing_the_active_feed_the_standby_takes_over_and_clients_resync(site):
    clients = await connect_all(site.ws_url, 20)
    try:
        old_epoch = clients[0].epoch
        killed = time.monotonic()
        site.procs["feed1"].kill(signal.SIGKILL)

        async def new_epoch(client: Reconnecting) -> float:
            await client.new_epoch.wait()
            return time.monotonic() - killed

        took = max(await asyncio.wait_for(asyncio.gather(*(new_epoch(c) for c in clients)), 10))
        print(f"\nstandby feed took over; all clients on the new epoch {took:.2f} s after SIGKILL")
        figure("cluster: every client on the standby feed's epoch", took, target=FAILOVER_BUDGET, limit=10.0)
        assert ": active, epoch" in site.procs["feed2"].output()
        epoch = clients[0].epoch
        assert epoch != old_epoch
        await advanced(clients, 3)
        assert all(c.epoch == epoch and not c.dropped_at for c in clients)
    finally:
        await stop_all(clients)


async def test_a_rolling_restart_drains_each_server_and_its_clients_resume_at_once(site):
    """SIGTERM to one app server at a time, each restarted and healthy before the next (what
    `make cluster-restart` does): every client of the server gets 1012 (none a 1006), is live again
    through nginx on the other one within 2 s of its close, and no batch is lost; each server
    exits well within its drain deadline."""
    clients = await connect_all(site.ws_url, CLIENTS)
    exits: list[float] = []
    back: list[float] = []
    try:
        await advanced(clients, 3)
        for name in ("web1", "web2"):
            took, times = await drained(site, name, clients)
            exits.append(took)
            back += times
            print(f"\n{name}: {len(times)} clients drained, exit {took:.2f} s after SIGTERM; live again after "
                  f"median {statistics.median(times):.2f} s, max {max(times):.2f} s")
            site.procs[name] = await asyncio.to_thread(
                start_app_server, site.logdir, site.env, name, site.addresses[name], f"{name}-rolled")
        await advanced(clients, 5)  # every client streams again, so a gap would show
        assert sorted({code for c in clients for code in c.closes}) == [1012]  # never a 1006
        assert [c.gaps for c in clients if c.gaps] == []
        assert all(op == "resume" for c in clients for op, _, _ in c.syncs[1:])
    finally:
        await stop_all(clients)
    figure("rolling restart: a client live again after its server's 1012", max(back), target=2.0, limit=10.0)
    figure("rolling restart: an app server exits after SIGTERM", max(exits), target=2.0, limit=10.0)


async def drained(site: ClusterSite, name: str, clients: list[Reconnecting]) -> tuple[float, list[float]]:
    """SIGTERM to app server ``name``; once it has exited and each of its clients is live again:
    how long it took to exit, and each client's time from its close to its resync."""
    ours = [c for c in clients if c.node == name]
    assert ours, f"no client on {name}"
    before = {id(c): len(c.dropped_at) for c in ours}
    proc = site.procs[name]
    signalled = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc.popen.wait, 30)
    took = time.monotonic() - signalled
    await eventually(lambda: all(len(c.dropped_at) > before[id(c)] and c.synced.is_set() for c in ours),
                     15, 0.05, f"every client of {name} to resume")
    return took, [c.synced_at - c.dropped_at[before[id(c)]] for c in ours]


# The runner behind `make cluster`, `make cluster-restart` and `make cluster-stop`.


def test_supervisord_conf_keeps_its_socket_private_and_waits_out_the_drain(tmp_path):
    site = cluster.Cluster(tmp_path, app_port=9001, env={"TICKER_DRAIN_SECONDS": "20"})
    conf = tmp_path / "supervisord.conf"
    conf.write_text(site.render_supervisord(4096))
    parsed = configparser.RawConfigParser()
    parsed.read(conf)
    assert dict(parsed["unix_http_server"]) == {"file": str(tmp_path / "supervisord.sock"), "chmod": "0700"}
    assert not [name for name in parsed.sections() if name.startswith("inet_http_server")]
    web = parsed["program:web"]
    assert (web["stopsignal"], web["stopwaitsecs"]) == ("TERM", "25")  # the drain's 20 s, then SIGKILL
    assert web["process_name"] == "%(program_name)s_%(process_num)s" and web["numprocs"] == "2"
    assert cluster.web_addresses(conf) == {"web_9001": "127.0.0.1:9001", "web_9002": "127.0.0.1:9002"}
    # Redis: two nodes through node.sh, three sentinels, stopped after the feeds and before the nodes.
    redis, sentinel = parsed["program:redis"], parsed["program:sentinel"]
    assert (redis["numprocs"], sentinel["numprocs"]) == ("2", "3") and "deploy/redis/node.sh" in redis["command"]
    assert int(redis["priority"]) < int(sentinel["priority"]) < int(parsed["program:feed"]["priority"])
    assert 'REDIS_NODES="127.0.0.1:6380,127.0.0.1:6381"' in redis["environment"]
    with pytest.raises(ValueError, match="TICKER_DRAIN_SECONDS"):
        cluster.Cluster(tmp_path, env={"TICKER_DRAIN_SECONDS": "soon"}).render_supervisord(4096)


def fetch_trusting(url: str, cafile: Path) -> tuple[int, dict[str, str]]:
    trust = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url, context=trust, timeout=10) as resp:
        return resp.status, dict(resp.headers)


def runner(run_dir: Path, *args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "deploy.cluster", "--run-dir", str(run_dir), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def start_supervisor(argv: list[str], env: dict[str, str], out: Path) -> subprocess.Popen:
    with open(out, "wb") as fh:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


async def test_cluster_runner_starts_restarts_one_at_a_time_and_stops_everything(tmp_path, seeded_database):
    run_dir = tmp_path / "run"
    env = prepared_env(seeded_database, tmp_path, DJANGO_STATIC_ROOT=str(tmp_path / "static"))
    listen, https_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    redis = RedisSet.on_free_ports()
    argv = [PYTHON, "-m", "deploy.cluster", "--run-dir", str(run_dir), "start", "--workers", "2",
            "--listen", listen, *redis.runner_options(), "--https-listen", https_listen]
    out = tmp_path / "cluster.out"
    supervisor = start_supervisor(argv, env, out)
    url = f"http://{listen}"
    clients: list[Reconnecting] = []
    try:
        await asyncio.to_thread(
            wait_until, lambda: "stop: Ctrl-C" in out.read_text() or supervisor.poll() is not None, 60, 0.1,
            "the cluster and its summary"
        )
        assert supervisor.poll() is None, out.read_text()
        assert "feed_1 active" in out.read_text() and "feed_2 standby" in out.read_text()
        assert fetch(url + "/static/ticker/board.js")[0] == 200
        assert get_json(url + "/healthz")[0] == 200
        # https on the second port, with the self-signed certificate it made under the run dir.
        status, headers = fetch_trusting(f"https://{https_listen}/", run_dir / "tls" / "fullchain.pem")
        assert status == 200 and f"wss://{https_listen}" in headers["Content-Security-Policy"]

        clients = await connect_all(url.replace("http://", "ws://") + "/ws/quotes/", 40)
        assert {c.node for c in clients} == {"web_1", "web_2"}  # named as supervisord names them
        # An operator halts the market (through nginx): a routine action, not an outage. Health
        # stays 200 through nginx past the feed's stale limit, and the rolling restart, which
        # waits for each server's /healthz, goes through during the halt.
        admin = AdminClient(url)
        admin.post_form(MARKET, {"halted": "on", "reason": "deploy in a halt", "_save": "Save"})
        halted = time.monotonic()
        await asyncio.to_thread(wait_until, lambda: get_json(url + "/healthz")[0] == 200 and (
            time.monotonic() - halted > STALE_FEED_SECONDS + 1), 30, 0.2, "the halt to outlast the stale limit")
        started = time.monotonic()
        done = await asyncio.to_thread(runner, run_dir, "restart", env=env)
        print(f"\nrolling restart of 2 app servers: {time.monotonic() - started:.1f} s\n{done.stdout}")
        assert done.returncode == 0, done.stdout + done.stderr + out.read_text()
        await eventually(lambda: all(c.dropped_at and c.synced.is_set() for c in clients), 15)
        # Every client was sent away once or twice (1012: the drain), came back and resumed: no batch lost.
        assert all(c.dropped_at and c.synced.is_set() for c in clients), [
            (c.node, c.drops, c.synced.is_set(), [(op, node) for op, node, _ in c.syncs]) for c in clients
        ]
        assert sorted({code for c in clients for code in c.closes}) == [1012]  # never a 1006
        flips = [line for f in (run_dir / "logs").glob("feed*.log") for line in f.read_text().splitlines()
                 if "stopped:" in line]
        assert all(op == "resume" for c in clients for op, _, _ in c.syncs[1:]), f"the feed meanwhile: {flips}"
        assert [c.gaps for c in clients if c.gaps] == []
        assert get_json(url + "/healthz")[0] == 200  # still halted, both servers new
        admin.post_form(MARKET, {"reason": "", "_save": "Save"})
        await stop_all(clients)

        control = cluster.control(run_dir)
        # A killed process is started again by supervisord (autorestart), with a new pid: the
        # replica, which comes back in sync with the primary (deploy/redis/node.sh).
        assert (redis.role(redis.nodes[0]), redis.role(redis.nodes[1])) == ("master", "slave")
        killed = control.pids()["redis_2"]
        os.kill(killed, signal.SIGKILL)
        await asyncio.to_thread(wait_until, lambda: control.pids().get("redis_2", killed) != killed, 30, 0.1,
                                "supervisord to start the replica again")
        await asyncio.to_thread(wait_until, lambda: redis.synced(redis.nodes[1]), 30, 0.1, "the replica in sync")

        pids = control.pids()
        assert set(pids) == {"redis_1", "redis_2", "sentinel_1", "sentinel_2", "sentinel_3", "feed_1", "feed_2",
                             "web_1", "web_2", "nginx"}
        supervisord = control.pid()
        done = runner(run_dir, "stop", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert supervisor.wait(timeout=30) == 0, out.read_text()
        print(out.read_text())
        assert [name for name, pid in {"supervisord": supervisord, **pids}.items() if pid_alive(pid)] == []
        assert control.pid() is None
    finally:
        await stop_all(clients)
        if supervisor.poll() is None:
            os.kill(supervisor.pid, signal.SIGTERM)
            supervisor.wait(timeout=30)
