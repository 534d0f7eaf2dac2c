"""The scaled topology for real: nginx (the config `make cluster` renders) in front of two app
servers (``python -m dashboard.serve --proxy-headers``, static files off) on one real Redis, fed
by two ``runfeed`` processes (one active, one hot standby). Clients only ever talk to nginx.

Also the runner behind `make cluster` itself (deploy/cluster.py): start, rolling restart with
clients connected, stop, and nothing left running.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import ssl
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from deploy import cluster
from tests.conftest import Site, prepared_env
from tests.servers import (
    PYTHON,
    ROOT,
    Proc,
    _spawn,
    free_port,
    start_feed,
    start_nginx,
    start_redis,
    started,
    wait_until,
)
from tests.test_live import Ws, get_json

CLIENTS = 200
RECOVERY_BUDGET = 5.0  # s: every client of a killed worker is back and resumed
FAILOVER_BUDGET = 3.0  # s: the standby feed publishes and clients hold the new epoch


class Client:
    """A protocol v1 client that behaves like the page (board.js): whole board, and on any
    disconnect it reconnects with exponential backoff and full jitter (0.5 s doubling to 15 s),
    then sends ``resume`` with the epoch and seq it holds. It records what happened."""

    BASE, CAP = 0.5, 15.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.epoch, self.seq, self.node = "", 0, ""
        self.failures = 0
        self.synced = asyncio.Event()  # holds a snapshot on the current connection
        self.dropped = asyncio.Event()  # lost a connection at least once
        self.new_epoch = asyncio.Event()  # a snap moved it onto another epoch
        self.synced_at = 0.0
        self.dropped_at: list[float] = []
        self.drops: list[str] = []  # why each connection ended
        self.syncs: list[tuple[str, str, dict]] = []  # (op sent, node, the snap that answered it)
        self.gaps: list[tuple[int, int]] = []
        self.errors: list[dict] = []
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def run(self) -> None:
        while True:
            try:
                async with websockets.connect(self.url, open_timeout=5, close_timeout=1) as ws:
                    await self.session(ws)
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.drops.append(f"{type(exc).__name__}: {exc}")
            else:
                self.drops.append("closed")
            self.synced.clear()
            self.dropped_at.append(time.monotonic())
            self.dropped.set()
            await asyncio.sleep(random.uniform(0, min(self.CAP, self.BASE * 2**self.failures)))
            self.failures += 1

    async def session(self, ws) -> None:
        hello = json.loads(await ws.recv())
        self.node = hello["node"]
        if self.epoch and hello["epoch"] == self.epoch and self.seq:
            op = "resume"
            await ws.send(json.dumps({"op": "resume", "epoch": self.epoch, "seq": self.seq, "symbols": "*"}))
        else:
            op = "sub"
            await ws.send(json.dumps({"op": "sub", "symbols": "*"}))
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame["t"]
            if kind == "snap":
                if self.epoch and frame["epoch"] != self.epoch:
                    self.new_epoch.set()
                self.epoch, self.seq = frame["epoch"], frame["seq"]
                if not self.synced.is_set():
                    self.syncs.append((op, self.node, frame))
                    self.synced_at = time.monotonic()
                    self.failures = 0
                    self.synced.set()
            elif kind == "q" and self.synced.is_set():
                if frame["seq"] != self.seq + 1:  # a whole-board client sees every batch
                    self.gaps.append((self.seq, frame["seq"]))
                self.seq = frame["seq"]
            elif kind == "err":
                self.errors.append(frame)


async def connect_all(url: str, n: int, timeout: float = 30.0) -> list[Client]:
    clients = [Client(url) for _ in range(n)]
    for i, client in enumerate(clients):
        client.start()
        if i % 25 == 24:
            await asyncio.sleep(0.05)  # let handshakes finish rather than queue 200 at once
    await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), timeout)
    return clients


async def stop_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.stop() for c in clients))


# The topology, built from the same pieces as `make cluster` (deploy/cluster.py).


@dataclass
class ClusterSite(Site):
    """A site behind nginx: also each app server's address, and whether a standby feed runs."""

    addresses: dict[str, str]
    standby: bool


def start_app_server(logdir: Path, env: dict[str, str], name: str, address: str, log_name: str = "") -> Proc:
    """One app server as `make cluster` runs it (dashboard.serve --proxy-headers, no static)."""
    Path(address.removeprefix("unix:")).unlink(missing_ok=True)  # a killed server leaves it behind
    proc = _spawn(log_name or name, cluster.app_server_argv(address), logdir, env=cluster.app_env(env, name))

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
        standby = wait_for_log(procs["feed2"], "standby", 5)
        if not standby:
            procs.pop("feed2").stop()  # two active feeds would fight over the epoch
        addresses = {name: f"unix:{tmp / f'{name}.sock'}" for name in ("web1", "web2")}
        for name, address in addresses.items():
            procs[name] = start_app_server(logs, env, name, address)
        procs["nginx"] = nginx = start_nginx(logs, list(addresses.values()), static)
        yield ClusterSite(f"http://127.0.0.1:{nginx.port}", env, procs, logs, addresses, standby)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_page_static_files_and_health_through_nginx(site):
    status, _, page = fetch(site.url + "/")
    assert status == 200 and b"AAPL" in page and b"/static/ticker/board.js" in page
    status, headers, body = fetch(site.url + "/static/ticker/board.js")
    assert status == 200 and body == (ROOT / "ticker/static/ticker/board.js").read_bytes()
    assert "Cross-Origin-Opener-Policy" not in headers and headers["Cache-Control"] == "max-age=3600"  # nginx's
    status, health = get_json(site.url + "/healthz")
    assert status == 200 and health["status"] == "ok" and health["node"] in {"web1", "web2"}


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
    streams = []
    for ws in by_node.values():
        await ws.send({"op": "sub", "symbols": "*"})
        await ws.until(lambda f: f["t"] == "snap")
    for ws in by_node.values():
        frames = {}
        while len(frames) < 10:
            frame = await ws.until(lambda f: f["t"] == "q")
            frames[frame["seq"]] = frame["q"]
        streams.append(frames)
    for ws in clients:
        await ws.close()
    common = set(streams[0]) & set(streams[1])
    assert len(common) >= 5
    assert all(streams[0][seq] == streams[1][seq] for seq in common)


async def test_killing_a_worker_its_clients_come_back_and_resume_within_5_s(site):
    clients = await connect_all(site.ws_url, CLIENTS)
    try:
        victims = [c for c in clients if c.node == "web1"]
        assert 40 <= len(victims) <= CLIENTS - 40, f"{len(victims)} of {CLIENTS} on web1"
        await asyncio.sleep(0.5)  # some batches, so resuming has something to skip
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
        assert times[-1] < RECOVERY_BUDGET
        flips = [line for line in site.procs["feed1"].output().splitlines() if "stopped:" in line]
        for client in victims:
            op, node, snap = client.syncs[-1]
            # A resume, not a fresh subscription: unless the feed started a new epoch meanwhile,
            # which only a failover may do.
            assert (op, node) == ("resume", "web2"), f"{op} on {node}; the feed meanwhile: {flips}"
            assert snap["epoch"] == held[id(client)][0] and snap["seq"] >= held[id(client)][1]
        survivors = [c for c in clients if c.node == "web2" and c not in victims]
        assert all(not c.dropped_at for c in survivors)
        await asyncio.sleep(0.5)
        assert all(c.synced.is_set() for c in clients)
        assert [c.gaps for c in clients if c.gaps] == []  # no batch lost after a resume
        assert [c.errors for c in clients if c.errors] == []
    finally:
        await stop_all(clients)

    # The test restarts the worker; nginx sends new clients to it again.
    site.procs["web1"] = await asyncio.to_thread(
        start_app_server, site.logdir, site.env, "web1", site.addresses["web1"], "web1-restarted"
    )
    deadline = time.monotonic() + 5
    while True:
        ws = await Ws.open(site.ws_url)
        await ws.close()
        if ws.hello["node"] == "web1":
            break
        assert time.monotonic() < deadline, "nginx sends nobody to the restarted worker"
        await asyncio.sleep(0.2)


async def wait_resynced(client: Client) -> None:
    await client.dropped.wait()  # cleared `synced` first
    await client.synced.wait()


async def test_killing_the_active_feed_the_standby_takes_over_and_clients_resync(site):
    if not site.standby:
        pytest.skip("runfeed has no standby support: a second runfeed did not log 'standby' within 5 s")
    clients = await connect_all(site.ws_url, 20)
    try:
        old_epoch = clients[0].epoch
        killed = time.monotonic()
        site.procs["feed1"].kill(signal.SIGKILL)

        async def new_epoch(client: Client) -> float:
            await client.new_epoch.wait()
            return time.monotonic() - killed

        took = max(await asyncio.wait_for(asyncio.gather(*(new_epoch(c) for c in clients)), 10))
        print(f"\nstandby feed took over; all clients on the new epoch {took:.2f} s after SIGKILL")
        assert took < FAILOVER_BUDGET
        assert ": active, epoch" in site.procs["feed2"].output()
        epoch = clients[0].epoch
        assert epoch != old_epoch
        await asyncio.sleep(0.5)
        assert all(c.epoch == epoch and c.synced.is_set() and not c.dropped_at for c in clients)
    finally:
        await stop_all(clients)


# The runner behind `make cluster`, `make cluster-restart` and `make cluster-stop`.


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
    argv = [PYTHON, "-m", "deploy.cluster", "--run-dir", str(run_dir), "start", "--workers", "2",
            "--listen", listen, "--redis-port", str(free_port()), "--https-listen", https_listen]
    out = tmp_path / "cluster.out"
    supervisor = start_supervisor(argv, env, out)
    url = f"http://{listen}"
    clients: list[Client] = []
    try:
        await asyncio.to_thread(
            wait_until, lambda: "up in" in out.read_text() or supervisor.poll() is not None, 60, 0.1, "the cluster"
        )
        assert supervisor.poll() is None, out.read_text()
        assert "feed1  active" in out.read_text() and "feed2  standby" in out.read_text()
        assert fetch(url + "/static/ticker/board.js")[0] == 200
        assert get_json(url + "/healthz")[0] == 200
        # https on the second port, with the self-signed certificate it made under the run dir.
        status, headers = fetch_trusting(f"https://{https_listen}/", run_dir / "tls" / "fullchain.pem")
        assert status == 200 and f"wss://{https_listen}" in headers["Content-Security-Policy"]

        clients = await connect_all(url.replace("http://", "ws://") + "/ws/quotes/", 40)
        assert {c.node for c in clients} == {"web1", "web2"}
        started = time.monotonic()
        done = await asyncio.to_thread(runner, run_dir, "restart", env=env)
        print(f"\nrolling restart of 2 app servers: {time.monotonic() - started:.1f} s\n{done.stdout}")
        assert done.returncode == 0, done.stdout + done.stderr + out.read_text()
        await asyncio.sleep(1.0)
        # Every client was cut once or twice (daphne has no drain), came back and resumed: no batch lost.
        assert all(c.dropped_at and c.synced.is_set() for c in clients), [
            (c.node, c.drops, c.synced.is_set(), [(op, node) for op, node, _ in c.syncs]) for c in clients
        ]
        flips = [line for f in (run_dir / "logs").glob("feed*.log") for line in f.read_text().splitlines()
                 if "stopped:" in line]
        assert all(op == "resume" for c in clients for op, _, _ in c.syncs[1:]), f"the feed meanwhile: {flips}"
        assert [c.gaps for c in clients if c.gaps] == []
        await stop_all(clients)

        pids = {f.stem: int(f.read_text().split()[0]) for f in (run_dir / "pids").glob("*.pid")}
        assert set(pids) == {"redis", "feed1", "feed2", "web1", "web2", "nginx"}
        done = runner(run_dir, "stop", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert supervisor.wait(timeout=30) == 0, out.read_text()
        print(out.read_text())
        assert [name for name, pid in pids.items() if cluster.start_time(pid)] == []
        assert list((run_dir / "pids").glob("*.pid")) == [] and not (run_dir / "cluster.pid").exists()
    finally:
        await stop_all(clients)
        if supervisor.poll() is None:
            os.kill(supervisor.pid, signal.SIGTERM)
            supervisor.wait(timeout=30)
