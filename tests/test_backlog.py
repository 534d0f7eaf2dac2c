"""Every listener queues 2,048 connections (``dashboard.serve.BACKLOG``), whatever it is given:
TCP under daphne and uvicorn, and a listening socket inherited with a shorter queue (``--fd``).
Twisted's own default of 50 overflows in a reconnect storm. Read from outside: a listening
socket's Send-Q in ``ss`` is its backlog."""

from __future__ import annotations

import socket
import subprocess
import urllib.request

import pytest

from dashboard.serve import BACKLOG
from tests.helpers.procs import PYTHON, Proc, start_daphne, started
from tests.helpers.sites import prepared_env

pytestmark = pytest.mark.integration


def backlog(port: int) -> int:
    """The accept queue's length of the socket listening on ``port`` on loopback."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_tcp_listener_queues_2048(tmp_path, seeded_database, server):
    proc = start_daphne(tmp_path / "logs", prepared_env(seeded_database, tmp_path), server=server)
    try:
        assert backlog(proc.port) == BACKLOG == 2048
    finally:
        proc.stop()


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_an_inherited_socket_is_given_the_same_queue(tmp_path, seeded_database, server):
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        port = listener.getsockname()[1]
        assert backlog(port) == 16
        argv = [PYTHON, "-m", "dashboard.serve", "--server", server, "--fd", str(listener.fileno())]
        proc = Proc(f"fd-{server}", argv, tmp_path / "logs", env=prepared_env(seeded_database, tmp_path),
                    pass_fds=(listener.fileno(),))
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        started(proc, lambda: urllib.request.urlopen(url, timeout=5).status == 200, 30, proc.name)
        assert backlog(port) == BACKLOG
    finally:
        proc.stop()
