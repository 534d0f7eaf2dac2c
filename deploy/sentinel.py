"""Redis with Sentinel on one host, as `make cluster` runs it: two redis-server nodes (the primary
and a replica; ``deploy/redis/node.sh`` chooses each one's role whenever it starts) and three
sentinels that watch them, all on loopback; their configuration and the probes the runner waits on.

The app finds the master through the sentinels (``TICKER_REDIS_SENTINELS``,
``TICKER_REDIS_MASTER``: ``ticker.layer.connection``). The sentinels' timeouts are short, for
nodes that share a host and answer in microseconds (Redis's defaults, 30 s and 3 minutes, are
for networks where a pause is not a death):

- ``down-after-milliseconds 1000``: a sentinel calls the primary down after 1 s without a valid
  answer; two of the three (the quorum) agree, one of them is elected and promotes the replica
  (measured: the sentinels name the new primary 2.2–2.5 s after a SIGKILL);
- ``failover-timeout 5000``: a failover that has not promoted a replica within 5 s is given up,
  and the next may start 10 s after the first (twice this);
- ``parallel-syncs 1``: there is one replica anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from deploy.procs import REDIS_OPTIONS, ROOT, free_ports, redis_server
from ticker.layer.connection import DEFAULT_MASTER

MASTER = DEFAULT_MASTER
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
NODE_SCRIPT = ROOT / "deploy" / "redis" / "node.sh"
# docker-compose.yml's sentinels start from this file (each copies it where it may rewrite it).
COMPOSE_SENTINEL_CONF = ROOT / "deploy" / "redis" / "sentinel-compose.conf"
COMPOSE_PRIMARY = ("redis-1", 6379)
COMPOSE_SENTINEL_PORT = 26379
SENTINELS = 3  # a quorum of 2 survives one of them lost
# A full resynchronisation starts at once (Redis 7 waits 5 s for more replicas to share one) and
# goes from socket to memory, no file on either side.
NODE_OPTIONS = (*REDIS_OPTIONS, "--repl-diskless-sync-delay", "0", "--repl-diskless-load", "swapdb")


@dataclass(frozen=True)
class RedisSet:
    """The loopback ports of the nodes (the first is the primary at the first start) and of the sentinels."""

    nodes: tuple[int, ...]
    sentinels: tuple[int, ...]
    host: str = "127.0.0.1"

    @classmethod
    def on_free_ports(cls) -> RedisSet:
        """Two nodes and three sentinels on loopback ports nobody listens on now (tests, benchmarks)."""
        ports = free_ports(2 + SENTINELS)
        return cls(tuple(ports[:2]), tuple(ports[2:]))

    def node_names(self) -> dict[str, int]:
        """The nodes' ports by their names under supervisord (``redis_1``, the first primary, …)."""
        return {f"redis_{n}": port for n, port in enumerate(self.nodes, 1)}

    def sentinel_names(self) -> dict[str, int]:
        """The sentinels' ports by their names under supervisord (``sentinel_1``, …)."""
        return {f"sentinel_{n}": port for n, port in enumerate(self.sentinels, 1)}

    def runner_options(self) -> list[str]:
        """The cluster runner's options for these ports (``python -m deploy.cluster start …``)."""
        return ["--redis-ports", ",".join(map(str, self.nodes)), "--sentinel-ports", ",".join(map(str, self.sentinels))]

    def addresses(self, ports: tuple[int, ...]) -> str:
        return ",".join(f"{self.host}:{port}" for port in ports)

    def app_env(self) -> dict[str, str]:
        """What the app servers and feeds are told: where the sentinels are, which master to ask for."""
        return {"TICKER_REDIS_SENTINELS": self.addresses(self.sentinels), "TICKER_REDIS_MASTER": MASTER}

    def node_env(self) -> dict[str, str]:
        """What ``node.sh`` reads: the nodes, and the sentinels to ask."""
        return {"REDIS_NODES": self.addresses(self.nodes), **self.app_env()}

    @staticmethod
    def node_argv(index: str) -> list[str]:
        """Node ``index`` (from 1; supervisord's ``%(process_num)s``): node.sh, then the server."""
        return ["sh", str(NODE_SCRIPT), index, redis_server(), *NODE_OPTIONS]

    @staticmethod
    def sentinel_argv(conf: str) -> list[str]:
        return [redis_server(), conf, "--sentinel"]

    def write_sentinel_confs(self, directory: Path) -> list[Path]:
        """A fresh configuration for each sentinel, ``sentinel_N.conf`` in ``directory``."""
        paths = []
        for n, port in enumerate(self.sentinels, 1):
            path = directory / f"sentinel_{n}.conf"
            path.write_text(sentinel_conf(port, (self.host, self.nodes[0]), bind=self.host))
            paths.append(path)
        return paths

    # Probes (each question gets a second at most)

    def role(self, port: int) -> str | None:
        """What the node on ``port`` says it is ("master", "slave"), None when it does not answer."""
        with ask(self.host, port) as client:
            return str(client.role()[0].decode())
        return None

    def synced(self, port: int) -> bool:
        """The node on ``port`` is a replica whose link to its primary is up."""
        with ask(self.host, port) as client:
            return bool(client.info("replication").get("master_link_status") == "up")
        return False

    def sentinel_ready(self, port: int) -> bool:
        """The sentinel on ``port`` knows a replica and could reach the quorum for a failover."""
        with ask(self.host, port) as client:
            client.execute_command("SENTINEL", "CKQUORUM", MASTER)  # an error when it could not
            return bool(client.execute_command("SENTINEL", "REPLICAS", MASTER))
        return False

    def primary(self) -> int | None:
        """The port of the node the sentinels name as the primary (the first that answers)."""
        for port in self.sentinels:
            with ask(self.host, port) as client:
                answer = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
                if answer:
                    return int(answer[1])
        return None


def sentinel_conf(port: int, primary: tuple[str, int], *, bind: str = "", hostnames: bool = False) -> str:
    """One sentinel's configuration, watching ``primary`` (where the master is at the first start);
    the sentinel rewrites the file itself as it learns (the replica, the other sentinels, each
    failover), so one that restarts knows what it knew. ``hostnames``: the nodes are named by
    host names (compose's services), which the sentinels resolve and also give to clients."""
    lines = [f"port {port}"]
    if bind:
        lines.append(f"bind {bind}")
    if hostnames:
        lines += ["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"]
    host, primary_port = primary
    lines += [
        f"sentinel monitor {MASTER} {host} {primary_port} {QUORUM}",
        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER} 1",
    ]
    return "\n".join([*lines, ""])


def render_compose_sentinel() -> str:
    """The configuration docker-compose.yml's sentinels start from (``render-compose`` writes it)."""
    return (
        "# Generated from deploy/sentinel.py by `python -m deploy.cluster render-compose`: edit that, not this\n"
        "# file. Each sentinel copies it into its own /data once and rewrites that copy as it learns.\n"
        + sentinel_conf(COMPOSE_SENTINEL_PORT, COMPOSE_PRIMARY, hostnames=True)
    )


@contextlib.contextmanager
def ask(host: str, port: int) -> Iterator[redis.Redis]:
    """A client of ``host:port`` for one question; any Redis or socket error ends the block quietly."""
    client = redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        yield client
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()
