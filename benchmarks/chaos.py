"""Chaos: kill parts of a running cluster under many clients, and check the ticker's safety property.

``python -m benchmarks.chaos [--clients 500] [--duration 300] [--every 20] [--seed N]`` (``make chaos``)
starts ``make cluster``'s topology itself, through its runner as a child process (``python -m
deploy.cluster start --workers 2``: Redis with Sentinel (a primary, a replica, three sentinels),
two runfeed (active + standby), two daphne app servers and nginx, on free loopback ports, in a
scratch directory, nginx's per-address caps off), connects ``--clients`` page-like clients
through nginx, and every ``--every`` seconds SIGKILLs one of: an app server (one of the workers
at random), the active feed (the one holding the feed lease in Redis) or the Redis primary (the
node the sentinels name), each by the pid the cluster's supervisord gives for it. Each kind
comes once in every three faults, in a random order. supervisord starts again whatever dies
(autorestart: a killed feed comes back as the standby; a killed primary, once the sentinels
have promoted the replica, as its replica). After
``--duration`` seconds it stops the clients and the cluster (by the runner's pid: the runner has
supervisord stop what it started), prints a table per fault on stderr and one JSON object on
stdout, and exits 1 if any check failed (2 if the cluster itself failed).

What each client checks (``benchmarks.pageclient``, whose docstring has the precise rules):

- **safety**: it never shows prices as live (the page's rules: socket open, a snapshot applied
  on this connection, a frame within 5 s) while the newest price it holds is more than 5 s old
  (its freshness mark: the newest row ``ts``, epoch ms). Checked on every frame and every 250 ms.
- **live again within 5 s of each fault**: the time from the SIGKILL until the client shows live
  prices that include a batch published after it.
- **no seq gap**: after each ``snap`` (a first ``sub``, a ``resume`` after a reconnect, a
  server's resync), every ``q`` follows on by exactly one.
- **one feed run at a time**: no ``snap`` takes a client back to an older epoch than one it held
  (``ticker.epochs``: two feeds' batches never interleaved, as after a failover that lost the
  lease's newest renewal); and once the faults are over exactly one feed is active: the one
  holding the lease.

After a primary's kill, the budget for being live again starts when the layer is back: the
sentinels name the promoted replica and it answers as the primary (``failover_s``, within
``FAILOVER_BUDGET_S``).

Per fault it records: kind, target, when the runner had it running again (and, for the
primary, when the layer was back), how many clients were
cut, time to live again (median, p99, worst across clients; how many late or never), violation
episodes and the worst age shown as live, seq gaps, and errors (failed connects, ``err`` frames,
closes other than the kill's own 1006, liveness drops). The clients are cheap (``pageclient``:
raw RFC 6455 on asyncio, ``q`` frames read without decoding), since they share the machine's
cores with the cluster they watch.

``--kinds stall`` (not in the default mix) freezes both feeds with SIGSTOP for ``--stall``
seconds instead of killing anything: the market goes silent while every connection stays up.
No client can be live again before it ends, so such a run fails its "live again" check by
construction; what it shows is whether a client shows the aging prices as live meanwhile
(docs/RELIABILITY.md, "Chaos").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from deploy import cluster as topology
from deploy.procs import PYTHON, ROOT, free_port
from deploy.sentinel import DOWN_AFTER_MS, RedisSet

from .harness import base_env
from .loadclient import raise_nofile
from .pageclient import FRESH_MS, Fault, Pool, now_ms
from .wsclient import percentiles

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a locked dependency
    uvloop = None

KINDS = ("web", "feed", "redis")
FEEDS = ("feed_1", "feed_2")  # the runner's two runfeed processes: active and standby
# Not a kill, and not in the default mix: both feeds SIGSTOPped for --stall seconds, then SIGCONT.
# No batch is published meanwhile, so no client can be live again before the stall ends.
STALL = "stall"
LIVE_BUDGET_S = 5.0  # every client live again this soon after each fault (after the layer is back)
# The layer is back this soon after the primary's kill: the sentinels' down-after, then a few
# seconds to agree, elect one of them and promote the replica.
FAILOVER_BUDGET_S = DOWN_AFTER_MS / 1000 + 3.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# The cluster, through its runner


def cluster_env(workdir: Path) -> dict[str, str]:
    """A cluster of its own: a new SQLite database, static files and var/ under ``workdir``, no
    outside Redis (the runner starts the one the chaos kills), the market of `make cluster`."""
    env = base_env()
    env.update(DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}", TICKER_VAR_DIR=str(workdir / "var"),
               DJANGO_STATIC_ROOT=str(workdir / "static"), DJANGO_SUPERUSER_PASSWORD=secrets.token_urlsafe(16))
    return env


class RunnerCluster:
    """`make cluster`'s topology, run by ``python -m deploy.cluster start`` as a child process.

    Its files live under ``workdir/run`` (supervisord's socket and configuration, logs, sockets,
    nginx); pids come from supervisord. ``stop()`` sends the runner SIGTERM (it has supervisord
    stop every program, in order), and stops a supervisord a dead runner left behind."""

    def __init__(self, workdir: Path, *, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.run_dir = workdir / "run"
        self.workers = workers
        self.env = dict(env if env is not None else cluster_env(workdir))
        for name in ("CHANNEL_LAYER_URL", "TICKER_REDIS_SENTINELS"):  # it runs (and kills) its own Redis
            self.env.pop(name, None)
        self.listen = f"127.0.0.1:{free_port()}"
        self.redis = RedisSet.on_free_ports()
        self.prefix = self.env.get("CHANNEL_LAYER_PREFIX", "ticker")
        self.out = workdir / "cluster.out"
        self.popen: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None  # the runner's, once stopped
        self.control = topology.control(self.run_dir)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.listen}/ws/quotes/"

    @property
    def webs(self) -> list[str]:
        return [f"web_{i}" for i in range(1, self.workers + 1)]

    def argv(self) -> list[str]:
        return [PYTHON, "-m", "deploy.cluster", "--run-dir", str(self.run_dir), "start",
                "--workers", str(self.workers), "--listen", self.listen, *self.redis.runner_options(),
                "--limit-ws", "0", "--limit-req", "0", "--https-listen", ""]

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start the runner and wait until it says the cluster is up; seconds taken."""
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.out, "wb") as fh:
            self.popen = subprocess.Popen(self.argv(), cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = began + timeout
        while "cluster: up in" not in self.output():
            if self.popen.poll() is not None:
                raise RuntimeError(f"the cluster runner exited ({self.popen.returncode}):\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster is not up after {timeout:.0f} s:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        return time.monotonic() - began

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def pid(self, name: str) -> int | None:
        """The pid of ``name`` (redis, feed_1, web_2, nginx…) while supervisord has it running."""
        return self.control.pids().get(name)

    @property
    def nodes(self) -> dict[int, str]:
        """The Redis nodes' names by port."""
        return {port: name for name, port in self.redis.node_names().items()}

    def whole(self) -> bool:
        running = self.control.pids()
        names = [*self.redis.node_names(), *self.redis.sentinel_names(), *FEEDS, *self.webs, "nginx"]
        return all(name in running for name in names)

    def primary(self) -> str:
        """The Redis node the sentinels name as the primary."""
        port = self.redis.primary()
        if port not in self.nodes:
            raise RuntimeError(f"the sentinels name no node of this cluster as the primary ({port})")
        return self.nodes[port]

    def failed_over(self, old: str) -> bool:
        """The sentinels name a primary other than ``old`` and it answers as the primary."""
        port = self.redis.primary()
        return port is not None and self.nodes.get(port) != old and self.redis.role(port) == "master"

    def lease_holder(self) -> int | None:
        """The pid in the feed lease (``host:pid:token``) on the primary, or None while nobody holds it."""
        import redis

        port = self.redis.primary()
        if port is None:
            return None
        client = redis.Redis(host=self.redis.host, port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            owner = client.get(f"{self.prefix}:feed-lease")
        except (redis.RedisError, OSError):
            return None
        finally:
            client.close()
        try:
            return int(owner.decode().split(":")[-2]) if owner else None
        except (ValueError, IndexError):
            return None

    def active_feeds(self) -> list[str]:
        """The feeds whose logs say they are active now (the lease's holder among them, or not)."""
        logs = self.run_dir / "logs"
        return [name for name in FEEDS if (logs / f"{name}.log").exists()
                and topology.feed_role((logs / f"{name}.log").read_text(errors="replace")) == "active"]

    def active_feed(self, timeout: float = 5.0) -> str:
        """The feed holding the lease (after a Redis restart the lease is back within a second)."""
        deadline = time.monotonic() + timeout
        while True:
            holder = self.lease_holder()
            running = self.control.pids()
            for name in FEEDS:
                if holder is not None and running.get(name) == holder:
                    return name
            if time.monotonic() > deadline:
                raise RuntimeError(f"no running feed holds the lease (holder pid {holder})")
            time.sleep(0.1)

    def target(self, kind: str, rng: random.Random) -> tuple[str, int]:
        """The process a fault of ``kind`` kills: ``(name, pid)``."""
        name = {"web": lambda: rng.choice(self.webs), "feed": self.active_feed, "redis": self.primary}[kind]()
        pid = self.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        return name, pid

    def one_active_feed(self, timeout: float = 5.0) -> bool:
        """Exactly one feed says it is active, and it holds the lease (a feed that lost the lease
        says so within a renewal: allowed ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            active, holder = self.active_feeds(), self.lease_holder()
            if len(active) == 1 and holder is not None and self.pid(active[0]) == holder:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def wait_restarted(self, name: str, old: int, timeout: float = 30.0) -> bool:
        """Wait until supervisord has started ``name`` again (running, with a new pid)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid(name)
            if pid is not None and pid != old:
                return True
            time.sleep(0.05)
        return False

    def roles(self) -> dict[str, str | None]:
        """What each Redis node says it is ("master", "slave"; None: no answer)."""
        return {name: self.redis.role(port) for port, name in self.nodes.items()}

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the runner (supervisord stops every program), then a supervisord a dead runner left behind."""
        code = None
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(10)
            code = self.popen.returncode
        if self.control.pid() is not None:
            topology.stop(self.run_dir)
        return code


# ---------------------------------------------------------------------------------------------
# Faults


def fault_times(duration: float, every: float, budget: float = LIVE_BUDGET_S) -> list[float]:
    """Seconds into the run: every ``every`` s, the last leaving ``budget`` s to recover before the end."""
    times, at = [], every
    while at + budget <= duration:
        times.append(at)
        at += every
    return times


def budget(opts: argparse.Namespace) -> float:
    """Seconds the last fault needs before the end: to be live again, after the stall or the
    failover if any."""
    return (opts.live_within + (opts.stall if STALL in opts.kinds else 0.0)
            + (FAILOVER_BUDGET_S if "redis" in opts.kinds else 0.0))


class Kinds:
    """Fault kinds in random order, each once in every ``len(kinds)`` faults."""

    def __init__(self, kinds: Sequence[str], rng: random.Random) -> None:
        self.kinds = list(kinds)
        self.rng = rng
        self.round: list[str] = []

    def next(self) -> str:
        if not self.round:
            self.round = self.rng.sample(self.kinds, len(self.kinds))
        return self.round.pop()


async def inflict(
    cluster: RunnerCluster, pool: Pool, kind: str, rng: random.Random, stall: float = 0.0
) -> tuple[Fault, asyncio.Task[None]]:
    """SIGKILL the target of ``kind`` (or stall the feeds); the fault is on record before any batch
    published after it can arrive. The task returned ends when the target runs again."""
    whole = await asyncio.to_thread(cluster.whole)
    if not whole:
        pool.event("cluster not whole before a fault")
    if not await asyncio.to_thread(cluster.one_active_feed, 0.0):
        pool.event("not one active feed before a fault")
    if kind == STALL:
        return stall_feeds(cluster, pool, stall)
    name, pid = await asyncio.to_thread(cluster.target, kind, rng)
    fault = Fault(len(pool.faults) + 1, kind, name, now_ms(), pid)
    pool.faults.append(fault)
    os.kill(pid, signal.SIGKILL)  # a child of the runner's supervisord, which we started
    began = time.monotonic()

    async def failed_over() -> None:
        if await asyncio.to_thread(wait_for, lambda: cluster.failed_over(name), FAILOVER_BUDGET_S + 10):
            fault.back_ms = int((time.monotonic() - began) * 1000)

    async def restarted() -> None:
        waiting = asyncio.create_task(failed_over()) if kind == "redis" else None
        if await asyncio.to_thread(cluster.wait_restarted, name, pid):
            fault.restarted_s = round(time.monotonic() - began, 2)
        if waiting is not None:
            await waiting

    return fault, asyncio.create_task(restarted())


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` every 50 ms until it holds (True) or ``timeout`` s passed (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stall_feeds(cluster: RunnerCluster, pool: Pool, seconds: float) -> tuple[Fault, asyncio.Task[None]]:
    """Freeze both feeds (SIGSTOP) for ``seconds``: the market goes silent while every connection stays up."""
    pids = [pid for pid in map(cluster.pid, FEEDS) if pid]
    fault = Fault(len(pool.faults) + 1, STALL, "feeds", now_ms(), pids[0] if pids else 0)
    pool.faults.append(fault)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    async def resume() -> None:
        try:
            await asyncio.sleep(seconds)
        finally:
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        fault.restarted_s = seconds

    return fault, asyncio.create_task(resume())


# ---------------------------------------------------------------------------------------------
# The run


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sleep_until(deadline: float, cluster: RunnerCluster) -> None:
    """Sleep until ``deadline`` (monotonic); fail early if the cluster runner died."""
    while (left := deadline - time.monotonic()) > 0:
        if not cluster.alive():
            raise RuntimeError(f"the cluster runner exited:\n{cluster.output()[-3000:]}")
        await asyncio.sleep(min(left, 0.5))


async def chaos(opts: argparse.Namespace, cluster: RunnerCluster) -> dict[str, Any]:
    """Clients on, faults every ``opts.every`` s for ``opts.duration`` s, clients off: the summary."""
    rng = random.Random(opts.seed)
    pool = Pool(cluster.ws_url)
    say(f"connecting {opts.clients} clients to {cluster.ws_url}")
    ramp = await pool.connect(opts.clients, opts.connect_rate)
    kinds = Kinds(opts.kinds, rng)
    cpu0, t0, start_ms = cpu_seconds(), time.monotonic(), now_ms()
    say(f"{opts.clients} clients live in {ramp:.1f} s; a fault every {opts.every:g} s for {opts.duration:g} s")
    watchers = []
    for at in fault_times(opts.duration, opts.every, budget(opts)):
        await sleep_until(t0 + at, cluster)
        fault, watcher = await inflict(cluster, pool, kinds.next(), rng, opts.stall)
        watchers.append(watcher)
        what = f"SIGSTOP the feeds for {opts.stall:g} s" if fault.kind == STALL else f"SIGKILL {fault.target}"
        say(f"t={at:5.0f} s  fault {fault.n}: {what} (pid {fault.pid})")
    await sleep_until(t0 + opts.duration, cluster)
    end_ms, window, cpu = now_ms(), time.monotonic() - t0, cpu_seconds() - cpu0
    await asyncio.gather(*watchers)
    one_feed = await asyncio.to_thread(cluster.one_active_feed)
    await pool.stop()
    result = summarize(pool, opts, start_ms, end_ms, window, cpu, ramp)
    result["active_feeds"] = await asyncio.to_thread(cluster.active_feeds)
    if not one_feed:
        result["ok"] = False
        result["failures"].append(f"not one active feed holding the lease at the end: {result['active_feeds']}")
    return result


def stats_s(values_ms: Sequence[int]) -> dict[str, float | None]:
    if not values_ms:
        return {"median": None, "p99": None, "max": None}
    ordered = sorted(values_ms)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": round(statistics.median(ordered) / 1000, 2), "p99": round(p99 / 1000, 2),
            "max": round(ordered[-1] / 1000, 2)}


def window_record(pool: Pool, begin: int, end: int) -> dict[str, Any]:
    """What happened in ``[begin, end)`` (epoch ms): violations, gaps, closes, errors."""
    episodes = [e for e in pool.episodes if begin <= e.start_ms < end]
    gaps = [g for g in pool.gaps if begin <= g[1] < end]
    backs = [b for b in pool.epochs_back if begin <= b[1] < end]
    closes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    cut = set()
    for at, client, what in pool.events:
        if not begin <= at < end:
            continue
        if what.startswith("closed "):
            closes[what.removeprefix("closed ")] += 1
            cut.add(client)
            if what != "closed 1006":  # a killed server's clients see 1006: any other code is news
                errors[what] += 1
        else:
            errors[what] += 1
    return {
        "cut": len(cut), "closes": dict(closes),
        "violations": len(episodes), "violating_clients": len({e.client for e in episodes}),
        "worst_age_shown_live_ms": max((e.worst_age_ms for e in episodes), default=None),
        "gaps": len(gaps), "gap_examples": [list(g) for g in gaps[:5]],
        "epochs_back": len(backs), "epoch_back_examples": [list(b) for b in backs[:5]],
        "errors": dict(errors),
    }


def summarize(pool: Pool, opts: argparse.Namespace, start_ms: int, end_ms: int, window: float, cpu: float,
              ramp: float) -> dict[str, Any]:
    n = len(pool.clients)
    budget_ms = int(opts.live_within * 1000)
    faults = []
    bounds = [f.at_ms for f in pool.faults] + [end_ms]
    for fault, until in zip(pool.faults, bounds[1:], strict=True):
        times = list(fault.live_again_ms.values())
        back = fault.back_ms or 0  # the budget starts once the layer is back
        record = {"n": fault.n, "at_s": round((fault.at_ms - start_ms) / 1000, 1), "kind": fault.kind,
                  "target": fault.target, "pid": fault.pid, "restarted_s": fault.restarted_s,
                  "failover_s": None if fault.back_ms is None else round(fault.back_ms / 1000, 2),
                  "live_again_s": stats_s(times), "live_after_failover_s": stats_s([t - back for t in times]),
                  "late": sum(1 for t in times if t - back > budget_ms),
                  "never": n - len(times), **window_record(pool, fault.at_ms, until)}
        faults.append(record)
    before = window_record(pool, 0, bounds[0])  # the ramp and the calm before the first fault
    by_kind = {}
    for kind in opts.kinds:
        mine = [f for f in pool.faults if f.kind == kind]
        times = [t for f in mine for t in f.live_again_ms.values()]
        records = [r for r in faults if r["kind"] == kind]
        by_kind[kind] = {"faults": len(mine), "live_again_s": stats_s(times),
                         "late": sum(r["late"] for r in records), "never": sum(r["never"] for r in records),
                         "violations": sum(r["violations"] for r in records), "gaps": sum(r["gaps"] for r in records)}
    hist = pool.group.summary()["hist"]
    p50, p99 = percentiles(hist, (50, 99))
    records = [before, *faults]
    totals = {key: sum(r[key] for r in records) for key in ("violations", "gaps", "epochs_back")}
    totals.update(late=sum(f["late"] for f in faults), never=sum(f["never"] for f in faults),
                  errors=sum(sum(r["errors"].values()) for r in records))
    failures = []
    if totals["violations"]:
        worst = max(r["worst_age_shown_live_ms"] or 0 for r in records)
        failures.append(f"{totals['violations']} time(s) a client showed prices as live that were older than "
                        f"{FRESH_MS} ms (worst {worst} ms)")
    if totals["late"] or totals["never"]:
        failures.append(f"clients not live again within {opts.live_within:g} s of a fault: {totals['late']} late, "
                        f"{totals['never']} never")
    if totals["gaps"]:
        failures.append(f"{totals['gaps']} seq gap(s) after a snapshot")
    if totals["epochs_back"]:
        failures.append(f"{totals['epochs_back']} snapshot(s) took a client back to an older epoch")
    slow = [f["failover_s"] for f in faults if f["kind"] == "redis"
            and (f["failover_s"] is None or f["failover_s"] > FAILOVER_BUDGET_S)]
    if slow:
        failures.append(f"the layer not back within {FAILOVER_BUDGET_S:g} s of a primary's kill: {slow}")
    if len(faults) < len(fault_times(opts.duration, opts.every, budget(opts))):
        failures.append("not every fault was made")
    return {
        "clients": n, "duration_s": round(window, 1), "every_s": opts.every, "seed": opts.seed,
        "connect_s": round(ramp, 1), "live_within_s": opts.live_within, "fresh_ms": FRESH_MS,
        "faults": faults, "before_faults": before, "by_kind": by_kind, "totals": totals,
        "freshness_ms": {"p50": p50, "p99": p99, "max": pool.group.fmax, "rows": pool.group.rows},
        "frames": pool.group.frames, "snaps": pool.group.snaps,
        "client_cpu_pct": round(100 * cpu / window, 1) if window else None,
        "ok": not failures, "failures": failures,
    }


def table(result: dict[str, Any]) -> str:
    """The human summary: one line per fault, then the totals."""
    head = (f"{'#':>3} {'t (s)':>6}  {'kind':<5} {'target':<7} {'back (s)':>8} {'layer (s)':>9} {'cut':>4}  "
            f"{'live again med/p99/max (s)':>27} {'late':>4} {'never':>5}  {'violations':>10} {'worst (ms)':>10} "
            f"{'gaps':>4}  errors")
    lines = [head, "-" * len(head)]
    for f in result["faults"]:
        live = f["live_again_s"]
        again = "/".join("-" if live[k] is None else f"{live[k]:.2f}" for k in ("median", "p99", "max"))
        errors = ", ".join(f"{k} ×{v}" for k, v in sorted(f["errors"].items())) or "-"
        back = "-" if f["restarted_s"] is None else f"{f['restarted_s']:.2f}"
        layer = "-" if f["failover_s"] is None else f"{f['failover_s']:.2f}"
        lines.append(f"{f['n']:>3} {f['at_s']:>6.1f}  {f['kind']:<5} {f['target']:<7} {back:>8} {layer:>9} "
                     f"{f['cut']:>4}  {again:>27} {f['late']:>4} {f['never']:>5}  {f['violations']:>10} "
                     f"{f['worst_age_shown_live_ms'] or '-':>10} {f['gaps']:>4}  {errors}")
    t = result["totals"]
    fr = result["freshness_ms"]
    lines.append("")
    for kind, k in result["by_kind"].items():
        live = k["live_again_s"]
        lines.append(f"{kind:<5}: {k['faults']} fault(s), live again median {live['median']} s, p99 {live['p99']} s, "
                     f"worst {live['max']} s; violations {k['violations']}, gaps {k['gaps']}")
    failovers = [f for f in result["faults"] if f["failover_s"] is not None]
    if failovers:
        after = max(f["live_after_failover_s"]["max"] or 0 for f in failovers)
        lines.append(f"redis: the layer back {min(f['failover_s'] for f in failovers):.2f}–"
                     f"{max(f['failover_s'] for f in failovers):.2f} s after the primary's kill; every client live "
                     f"again within {after:.2f} s of that")
    before = result["before_faults"]
    lines.append(f"before the first fault: violations {before['violations']}, gaps {before['gaps']}, "
                 f"errors {before['errors'] or '-'}")
    lines.append(f"{result['clients']} clients, {result['duration_s']} s; freshness of every row p50 {fr['p50']} ms, "
                 f"p99 {fr['p99']} ms, max {fr['max']} ms; client CPU {result['client_cpu_pct']} %")
    lines.append(f"active feeds at the end: {', '.join(result.get('active_feeds', [])) or 'none'}")
    lines.append(f"totals: violations {t['violations']}, late {t['late']}, never {t['never']}, gaps {t['gaps']}, "
                 f"epochs back {t['epochs_back']}, errors {t['errors']}: "
                 + ("OK" if result["ok"] else "FAILED: " + "; ".join(result["failures"])))
    return "\n".join(lines)


def say(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def run_loop(coro: Any) -> Any:
    return uvloop.run(coro) if uvloop is not None else asyncio.run(coro)


def run(opts: argparse.Namespace, workdir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start the cluster in ``workdir``, run the chaos, stop the cluster: the summary.
    ``env`` is the cluster's environment (default: a fresh database under ``workdir``)."""
    return in_cluster(opts, workdir, env, chaos)


def in_cluster(
    opts: argparse.Namespace, workdir: Path, env: dict[str, str] | None,
    body: Callable[[argparse.Namespace, RunnerCluster], Coroutine[Any, Any, dict[str, Any]]],
) -> dict[str, Any]:
    """Start the cluster in ``workdir``, run ``body`` against it, stop it; ``body``'s summary with
    what the runner did."""
    with running(workdir, opts.workers, env) as cluster:
        result: dict[str, Any] = run_loop(body(opts, cluster))
        roles = cluster.roles()
    result["cluster"] = {"workers": opts.workers, "runner_exit": cluster.exit_code, "run_dir": str(cluster.run_dir),
                         "restarts": cluster.output().count("; not expected)"), "redis_roles": roles}
    return result


@contextmanager
def running(workdir: Path, workers: int, env: dict[str, str] | None) -> Iterator[RunnerCluster]:
    """The cluster in ``workdir``, started, and stopped at the end (its runner's exit status in
    ``exit_code``)."""
    raise_nofile()
    cluster = RunnerCluster(workdir, workers=workers, env=env)
    try:
        took = cluster.start()
        say(f"cluster up in {took:.1f} s on {cluster.url} (files in {cluster.run_dir})")
        yield cluster
    finally:
        cluster.exit_code = cluster.stop()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=500, help="page-like clients (default %(default)s)")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of chaos (default %(default)s)")
    p.add_argument("--every", type=float, default=20.0, help="seconds between faults (default %(default)s)")
    p.add_argument("--kinds", type=lambda s: s.split(","), default=",".join(KINDS),
                   help=f"fault kinds, comma-separated (default %(default)s; also {STALL!r}: both feeds "
                   "frozen for --stall seconds, every connection up)")
    p.add_argument("--stall", type=float, default=8.0, help="seconds a 'stall' fault lasts (default %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="app servers (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the fault order and targets")
    p.add_argument("--live-within", type=float, default=LIVE_BUDGET_S,
                   help="seconds each client has to be live again after a fault (default %(default)s)")
    p.add_argument("--connect-rate", type=float, default=200.0, help="new clients a second (default %(default)s)")
    p.add_argument("--workdir", type=Path, help="the cluster's files (default: a new temporary directory, "
                   "removed after a run that passed)")
    p.add_argument("--json", type=Path, help="also write the JSON summary to this file")
    return p


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = parser()
    opts = p.parse_args(argv)
    if opts.seed is None:
        opts.seed = random.randrange(2**31)
    unknown = set(opts.kinds) - {*KINDS, STALL}
    if unknown or not opts.kinds:
        p.error(f"--kinds: choose among {', '.join((*KINDS, STALL))}")
    if STALL in opts.kinds and opts.stall >= opts.every:
        p.error("--stall must end before the next fault (--every)")
    if opts.clients < 1 or opts.every <= 0 or not fault_times(opts.duration, opts.every, budget(opts)):
        p.error("need --clients >= 1 and room for one fault: --duration >= --every + --live-within")
    return opts


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(argv)
    return run_and_report("chaos", run, table, opts)


def run_and_report(
    name: str, runner: Callable[[Any, Path], dict[str, Any]], summary: Callable[[dict[str, Any]], str], opts: Any
) -> int:
    """Run a chaos or soak session in a scratch directory (kept when something failed), print the
    human summary and one JSON line (also to ``--json``); exit 0 when it passed, 1 when not."""
    signal.signal(signal.SIGTERM, interrupt)  # as Ctrl-C: the cluster is stopped on the way out
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix=f"ticker-{name}-"))
    try:
        result = runner(opts, workdir)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; the cluster's files are in {workdir}", file=sys.stderr, flush=True)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"{name}: error: {exc}\nthe cluster's files are in {workdir}", file=sys.stderr, flush=True)
        return 2
    print(summary(result), file=sys.stderr)
    text = json.dumps(result)
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(text + "\n")
    print(text, flush=True)
    if result["ok"] and opts.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not result["ok"]:
        print(f"{name}: the cluster's logs are in {workdir / 'run' / 'logs'}", file=sys.stderr, flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
