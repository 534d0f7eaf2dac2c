"""What a WebSocket handshake costs the server: ``python -m benchmarks.handshakes [--server daphne]``.

One app server (embedded mode, a fresh database) alone on core 1; this client on core 0 opens
``--count`` WebSockets, ``--parallel`` at a time, each read until its ``hello``, and holds them.
It prints the server's CPU per handshake (from ``/proc``) and the rate it accepted them at. The
figure behind a reconnect storm (DESIGN.md §8): a core fills at one over that cost a second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import tempfile
import time
from pathlib import Path

from deploy.procs import PYTHON, ROOT, Proc, free_port, http_ok, started

WARM_UP = 100


def cpu_seconds(pid: int) -> float:
    """User and system CPU of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def handshake(port: int) -> asyncio.StreamWriter:
    """One WebSocket opened and read until its ``hello``; left open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws/quotes/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    seen = b""
    while b'"hello"' not in seen:
        chunk = await asyncio.wait_for(reader.read(65536), 30)
        if not chunk:
            raise ConnectionError(seen[:200].decode(errors="replace"))
        seen += chunk
    return writer


async def measure(pid: int, port: int, count: int, parallel: int) -> tuple[float, float]:
    """Server CPU seconds per handshake and handshakes a second, after a warm-up."""
    for writer in [await handshake(port) for _ in range(WARM_UP)]:
        writer.close()
    await asyncio.sleep(1)
    held: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            held.append(await handshake(port))

    cpu, started_at = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    cpu, took = cpu_seconds(pid) - cpu, time.monotonic() - started_at
    for writer in held:
        writer.close()
    return cpu / count, count / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="daphne", choices=("daphne", "uvicorn"))
    parser.add_argument("--count", type=int, default=2000, help="handshakes measured (default %(default)s)")
    parser.add_argument("--parallel", type=int, default=50, help="handshakes in flight (default %(default)s)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticker-handshakes-") as scratch:
        tmp = Path(scratch)
        env = {**os.environ, "TICKER_VAR_DIR": str(tmp), "TICKER_LIMIT_EXEMPT": "127.0.0.0/8",
               "DJANGO_SUPERUSER_PASSWORD": os.urandom(12).hex()}
        for command in (["migrate", "-v0"], ["setup_demo"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
        port = free_port()
        argv = ["taskset", "-c", "1", PYTHON, "-m", "dashboard.serve", "--server", opts.server, "--port", str(port)]
        server = started(Proc(f"{opts.server}-{port}", argv, tmp / "logs", env=env, port=port),
                         lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, opts.server)
        try:
            os.sched_setaffinity(0, {0})
            per, rate = asyncio.run(measure(server.pid, port, opts.count, opts.parallel))
        finally:
            server.stop()
    print(f"{opts.server}: {opts.count} handshakes, {per * 1e6:.0f} µs of server CPU each, {rate:.0f} a second")


if __name__ == "__main__":
    main()
