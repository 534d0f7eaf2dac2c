"""The cluster paths of the benchmark: 1 or 2 app servers behind nginx, as ``make cluster`` runs them.

Each run starts ``workers`` app servers (``python -m dashboard.serve --server S --proxy-headers
--unix-socket …``, named ``web1``, ``web2`` in ``hello`` and ``/healthz``, static files off) on
the path's Redis and feed, and nginx on a free loopback port in front of them, configured by
``deploy/cluster.py`` from ``deploy/nginx/nginx.conf.in`` (the template ``make cluster`` and
docker-compose use; ``least_conn``). The load client connects to nginx; every app server's pid
is watched (CPU and RSS summed) and nginx's CPU is reported apart. Everything shares the
machine's cores with the load client: see docs/PERFORMANCE.md.
"""

from __future__ import annotations

import resource
import socket
import subprocess
from collections.abc import Callable

from benchmarks.harness import PY, Bench, Deployment, Proc, free_port, http_ok, wait_ready, ws_first_message

# name: (ASGI server, app servers behind nginx)
CLUSTER_PATHS = {
    "cluster-1": ("daphne", 1),
    "cluster-2": ("daphne", 2),
    "cluster-uvicorn-1": ("uvicorn", 1),
    "cluster-uvicorn-2": ("uvicorn", 2),
}
# name: (ASGI server, app servers sharing one listening socket, no proxy)
SHARED_PATHS = {"shared-2": ("daphne", 2), "shared-uvicorn-2": ("uvicorn", 2)}
# `make cluster` renders 4096 worker connections (8192 files) per nginx worker. Every proxied
# WebSocket takes two, and the kernel does not spread accepted connections evenly over nginx's
# workers, so 5,000 clients need more: the compose file's 16384.
NGINX_WORKER_CONNECTIONS = 16384


def nginx_limits() -> tuple[int, int]:
    """(worker_connections, worker_rlimit_nofile): nginx sets its workers' open-files limit to the
    latter, which only CAP_SYS_RESOURCE may raise above the hard limit (a container may lack it
    even as root), so stay within the hard limit this runner has."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 2 * NGINX_WORKER_CONNECTIONS if hard == resource.RLIM_INFINITY else min(2 * NGINX_WORKER_CONNECTIONS, hard)
    return min(NGINX_WORKER_CONNECTIONS, nofile - 64), nofile


def cluster_server(server: str, workers: int) -> Callable[[Bench, dict[str, str]], Deployment]:
    """Start ``workers`` app servers running ``server`` and nginx in front of them."""

    def start(bench: Bench, env: dict[str, str]) -> Deployment:
        from deploy import cluster as topology

        port = free_port()
        name = f"cluster{workers}-{server}-{port}"
        sockets = bench.tmp / name
        sockets.mkdir(parents=True)
        nodes = [f"web{i}" for i in range(1, workers + 1)]
        addresses = [f"unix:{sockets / f'{node}.sock'}" for node in nodes]
        started: list[Proc] = []
        try:
            for node, address in zip(nodes, addresses, strict=True):
                argv = [*topology.app_server_argv(address), "--server", server]
                started.append(bench.start(f"{name}-{node}", argv, topology.app_env(env, node)))
            for proc, address in zip(started, addresses, strict=True):
                wait_ready(proc, lambda address=address: topology.healthy(address), proc.name)
            prefix = bench.tmp / f"{name}-nginx"
            connections, nofile = nginx_limits()
            conf = topology.write_nginx_conf(
                prefix, listen=f"127.0.0.1:{port}", upstreams=addresses, static_root=bench.tmp / "static",
                log_dir=bench.logdir / f"{name}-nginx", worker_connections=connections, worker_rlimit_nofile=nofile,
            )
            check = subprocess.run(topology.nginx_argv(prefix, conf, test=True), capture_output=True, text=True,
                                   timeout=30)
            if check.returncode:
                raise RuntimeError(f"nginx -t rejected {conf}:\n{check.stderr}")
            nginx = bench.start(f"{name}-nginx", topology.nginx_argv(prefix, conf))
            started.insert(0, nginx)
            url = f"ws://127.0.0.1:{port}/ws/quotes/"
            wait_ready(nginx, lambda: ws_first_message(url, "v1"), f"nginx on {port}")
        except BaseException:
            bench.stop(*started)
            raise
        servers = started[1:]
        info = {
            "server": server, "workers": workers, "upstreams": "unix sockets",
            "nodes": {node: proc.pid for node, proc in zip(nodes, servers, strict=True)},
            "nginx": {"worker_processes": "auto", "worker_connections": connections, "worker_rlimit_nofile": nofile,
                      "conf": "deploy/nginx/nginx.conf.in via deploy.cluster.write_nginx_conf"},
        }
        return Deployment(url, servers, proxy=nginx, info=info)

    return start


def shared_server(server: str, workers: int) -> Callable[[Bench, dict[str, str]], Deployment]:
    """Start ``workers`` app servers running ``server`` that accept on one listening socket, made
    here and inherited by each (``dashboard.serve --fd``, as supervisor's ``fcgi-program`` does):
    the kernel hands each new connection to one of them. No proxy; they serve static files."""

    def start(bench: Bench, env: dict[str, str]) -> Deployment:
        listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
        port = listener.getsockname()[1]
        name = f"shared{workers}-{server}-{port}"
        nodes = [f"web{i}" for i in range(1, workers + 1)]
        started: list[Proc] = []
        try:
            for node in nodes:
                argv = [PY, "-m", "dashboard.serve", "--server", server, "--fd", str(listener.fileno())]
                started.append(bench.start(f"{name}-{node}", argv, {**env, "TICKER_NODE": node},
                                           pass_fds=(listener.fileno(),)))
            for proc in started:
                wait_ready(proc, lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), proc.name)
        except BaseException:
            bench.stop(*started)
            raise
        finally:
            listener.close()  # the servers hold their own copies
        info = {"server": server, "workers": workers, "upstreams": "one shared listening socket (--fd)",
                "nodes": {node: proc.pid for node, proc in zip(nodes, started, strict=True)}}
        return Deployment(f"ws://127.0.0.1:{port}/ws/quotes/", started, info=info)

    return start
