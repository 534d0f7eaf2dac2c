"""Several app servers on one listening socket (``dashboard.serve --fd``, as supervisor's
``fcgi-program`` runs them): one host, a core per server, no proxy. The kernel hands each new
connection to one of them; each serves it from its own hub."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections import Counter

import pytest

from tests.helpers.clients import Ws
from tests.helpers.procs import PYTHON, Proc, start_feed, start_redis, started
from tests.helpers.sites import prepared_env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
async def test_two_servers_on_one_inherited_socket_share_the_clients_and_stand_in_for_each_other(
    tmp_path, seeded_database, server
):
    logs = tmp_path / "logs"
    redis = start_redis(logs)
    procs = [redis]
    clients: list[Ws] = []
    try:
        env = prepared_env(seeded_database, tmp_path, CHANNEL_LAYER_URL=f"redis://127.0.0.1:{redis.port}/0",
                           TICKER_FEED_RATE="100")
        procs.append(start_feed(logs, env))
        with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
            port = listener.getsockname()[1]
            for node in ("web1", "web2"):
                argv = [PYTHON, "-m", "dashboard.serve", "--server", server, "--fd", str(listener.fileno())]
                procs.append(Proc(f"{node}-{server}", argv, logs, env={**env, "TICKER_NODE": node},
                                  pass_fds=(listener.fileno(),)))
        # The listening socket now lives only in the two servers.
        base = f"http://127.0.0.1:{port}"
        for proc in procs[2:]:
            started(proc, lambda: urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200, 30, proc.name)
        url = f"ws://127.0.0.1:{port}/ws/quotes/"
        nodes: Counter[str] = Counter()
        while len(nodes) < 2 and len(clients) < 200:  # both take connections from the one socket
            clients.append(await Ws.open(url))
            nodes[clients[-1].hello["node"]] += 1
        assert set(nodes) == {"web1", "web2"}, nodes
        for ws in clients:
            await ws.send({"op": "sub", "symbols": "*"})
        for ws in clients:  # each server fans the feed out to its own clients
            await ws.until(lambda f: f["t"] == "q", 10)
        procs[-1].stop()  # web2 goes away: web1 alone accepts on the same socket
        for _ in range(5):
            ws = await Ws.open(url)
            clients.append(ws)
            assert ws.hello["node"] == "web1"
            await ws.send({"op": "sub", "symbols": "*"})
            await ws.until(lambda f: f["t"] == "q", 10)
    finally:
        for ws in clients:
            await ws.conn.close()
        for proc in reversed(procs):
            proc.stop()


@pytest.mark.parametrize("extra", [["--unix-socket", "/tmp/x.sock"], ["--tls-cert", "c.pem", "--tls-key", "k.pem"]])
def test_a_shared_socket_with_another_listener_or_tls_is_refused_with_a_clear_error(extra):
    done = subprocess.run([PYTHON, "-m", "dashboard.serve", "--fd", "3", *extra], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "--fd takes the place of --unix-socket and TLS" in done.stderr
