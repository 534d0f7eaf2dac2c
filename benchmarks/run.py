"""The fan-out benchmark: every server path under the same market and the same load client.

``make bench`` (``python -m benchmarks.run``) starts what each path needs on free loopback
ports (redis-server without persistence, a feed, one server process), waits until it answers,
loads it with ``benchmarks.loadclient`` at each client count, stops everything it started (by
pid, also on Ctrl-C or an error), appends every run to ``benchmarks/results/<date>.jsonl`` and
regenerates ``docs/PERFORMANCE.md`` with ``docs/perf-fanout.png`` from this session's runs.

The market is the same for every path: 50 symbols, 200 ticks a second, 100 ms batches where
the path batches at all. Paths:

- ``ours-daphne``, ``ours-uvicorn``: this project (``runfeed`` + ``dashboard.serve``), Redis layer;
- ``stock-channels``: the tutorial Channels path (``benchmarks/baseline/stock_*``), one message per tick;
- ``plain-websockets``: ``websockets.broadcast`` with the market in process, the ceiling;
- ``picows``: the same market on picows (framing and writes in C), the floor;
- ``socketio``: python-socketio under uvicorn, room emits;
- ``cluster-1``, ``cluster-2`` (and ``cluster-uvicorn-1``, ``-2``): ours as ``make cluster`` runs
  it, 1 or 2 app servers on unix sockets behind nginx (``benchmarks/cluster.py``). Not in the
  default set: ``make bench-cluster`` runs them next to ``ours-daphne`` (the same server without
  nginx) and writes their own section of the report.

Cases: the whole board at each N (stopping for a path once it clearly collapses), a watchlist
(10 of the 50 symbols per client) at a couple of N, for ours a slow-consumer run (5 % of
the clients stop reading for 30 s) with its reference run (same N, same acks, nobody slow), and
a storm (``benchmarks/storm.py``: 2,500 whole-board clients, then 2,500 more at once) for ours,
plain ``websockets`` and picows; ``make bench-storm`` runs that case alone.
``--quick`` runs a small matrix in a minute or two and writes under ``var/bench/`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import storm
from benchmarks.cluster import CLUSTER_PATHS, SHARED_PATHS, cluster_server, shared_server
from benchmarks.harness import (
    BATCH_MS,
    PY,
    RATE,
    ROOT,
    SYMBOLS,
    Bench,
    Deployment,
    Pinning,
    Proc,
    base_env,
    free_port,
    http_ok,
    hub_counts,
    rss_tree,
    wait_ready,
    ws_first_message,
)

HOLD_P99_MS = 250  # a path holds at N when p99 freshness ≤ this, no gaps, every client connected
COLLAPSE_P99_MS = 2000  # ... and has clearly collapsed beyond this (or < 90 % connected)
PACKAGES = ("django", "channels", "daphne", "twisted", "autobahn", "channels-redis", "redis", "orjson", "uvicorn",
            "uvloop", "httptools", "websockets", "picows", "aiofastnet", "python-socketio", "python-engineio", "psutil")


# Paths


@dataclass(frozen=True)
class PathSpec:
    """A server path: how to start its infrastructure (once) and its server (once per run)."""

    name: str
    dialect: str
    needs: tuple[str, ...]  # baseline modules that must exist
    start_infra: Callable[[Bench], tuple[list[Proc], dict[str, str]]]
    start_server: Callable[[Bench, dict[str, str]], Deployment]

    def missing(self) -> list[str]:
        return [m for m in self.needs if not (ROOT / "benchmarks" / "baseline" / f"{m}.py").exists()]


def ours_infra(bench: Bench) -> tuple[list[Proc], dict[str, str]]:
    redis, url = bench.redis()
    env = bench.ours_env(url)
    bench.prepare_database(env)
    feed = bench.start(f"runfeed-{redis.name}", [PY, "manage.py", "runfeed", "--rate", str(RATE), "--batch-ms",
                                                 str(BATCH_MS), "--seed", "1"], env)
    return [redis, feed], env


def ours_server(server: str, **settings: str) -> Callable[[Bench, dict[str, str]], Deployment]:
    def start(bench: Bench, env: dict[str, str]) -> Deployment:
        port = free_port()
        proc = bench.start(f"ours-{server}-{port}", [PY, "-m", "dashboard.serve", "--server", server, "--host",
                                                     "127.0.0.1", "--port", str(port)], {**env, **settings})
        wait_ready(proc, lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), f"{server} on {port}")
        return Deployment(f"ws://127.0.0.1:{port}/ws/quotes/", [proc],
                          metrics=[f"http://127.0.0.1:{port}/metrics"])

    return start


def stock_infra(bench: Bench) -> tuple[list[Proc], dict[str, str]]:
    redis, url = bench.redis()
    feed = bench.start(f"stock_feed-{redis.name}", [PY, "-m", "benchmarks.baseline.stock_feed", "--redis", url,
                                                    "--symbols", str(SYMBOLS), "--rate", str(RATE)])
    return [redis, feed], {"redis": url}


def stock_server(bench: Bench, infra: dict[str, str]) -> Deployment:
    port = free_port()
    proc = bench.start(f"stock-{port}", [PY, "-m", "benchmarks.baseline.stock_server", "--redis", infra["redis"],
                                         "--port", str(port), "--symbols", str(SYMBOLS)])
    url = f"ws://127.0.0.1:{port}/ws/quotes/"
    wait_ready(proc, lambda: ws_first_message(url, "v1"), f"stock server on {port}")
    return Deployment(url, [proc])


def no_infra(bench: Bench) -> tuple[list[Proc], dict[str, str]]:
    return [], {}


def in_process_server(module: str, dialect: str) -> Callable[[Bench, dict[str, str]], Deployment]:
    def start(bench: Bench, infra: dict[str, str]) -> Deployment:
        port = free_port()
        proc = bench.start(f"{module}-{port}", [PY, "-m", f"benchmarks.baseline.{module}", "--port", str(port),
                                                "--symbols", str(SYMBOLS), "--rate", str(RATE), "--batch-ms",
                                                str(BATCH_MS)])
        url = f"ws://127.0.0.1:{port}/" if dialect == "socketio" else f"ws://127.0.0.1:{port}/ws/quotes/"
        wait_ready(proc, lambda: ws_first_message(url, dialect), f"{module} on {port}")
        return Deployment(url, [proc])

    return start


PATHS = {
    spec.name: spec
    for spec in (
        PathSpec("ours-daphne", "v1", (), ours_infra, ours_server("daphne")),
        PathSpec("ours-daphne-asgi", "v1", (), ours_infra, ours_server("daphne", TICKER_DAPHNE_FAST_PATH="0")),
        PathSpec("ours-uvicorn", "v1", (), ours_infra, ours_server("uvicorn")),
        PathSpec("stock-channels", "v1", ("stock_feed", "stock_server"), stock_infra, stock_server),
        PathSpec("plain-websockets", "v1", ("plain_ws",), no_infra, in_process_server("plain_ws", "v1")),
        PathSpec("picows", "v1", ("picows_server",), no_infra, in_process_server("picows_server", "v1")),
        PathSpec("socketio", "socketio", ("socketio_server",), no_infra,
                 in_process_server("socketio_server", "socketio")),
        *(PathSpec(name, "v1", (), ours_infra, cluster_server(server, workers))
          for name, (server, workers) in CLUSTER_PATHS.items()),
        *(PathSpec(name, "v1", (), ours_infra, shared_server(server, workers))
          for name, (server, workers) in SHARED_PATHS.items()),
    )
}
OURS = ("ours-daphne", "ours-daphne-asgi", "ours-uvicorn")
STORM_PATHS = ("ours-daphne", "ours-uvicorn", "plain-websockets", "picows")  # the storm case's
FANOUT = tuple(p for p in PATHS if p not in CLUSTER_PATHS and p not in SHARED_PATHS)  # what `make bench` runs


# The matrix


@dataclass
class Run:
    """One load run of the plan."""

    path: str
    case: str  # board | watchlist | ack (reference of the slow run) | slow | overload (board, busy server core) | storm
    clients: int
    duration: float
    repeat: int = 0
    extra: list[str] = field(default_factory=list)
    after: float = 0.0  # seconds the run may last past its window: a storm's deadline

    def estimate(self, connect_rate: float) -> float:
        """Seconds at most: start a server, ramp, warm up, measure, close."""
        return 6 + self.clients / connect_rate + 2 + self.duration + self.after + 4


def plan(opts: argparse.Namespace, paths: list[str]) -> list[Run]:
    """Every run, in order: per path, the whole board by rising N, watchlists, then the slow case."""
    runs: list[Run] = []
    for path in paths:
        for n in opts.clients:
            runs += [Run(path, "board", n, opts.duration, r) for r in range(opts.repeat)]
        for n in opts.watchlist_clients:
            runs += [Run(path, "watchlist", n, opts.duration, r, ["--symbols", str(opts.watchlist_symbols)])
                     for r in range(opts.repeat)]
        if path in OURS:
            runs += [Run(path, "overload", n, opts.duration, r) for n in opts.overload_clients
                     for r in range(opts.repeat)]
        if path in OURS and opts.slow_clients:
            # Clients ack as the server's hello asks: not at all on daphne's fast path (Twisted
            # reports each connection's buffer), every 2 s elsewhere.
            ack = [] if path == "ours-daphne" else ["--ack", "2"]
            slow_duration = opts.slow_after + opts.slow_for + opts.slow_tail
            slow = [*ack, "--slow-fraction", str(opts.slow_fraction), "--slow-after", str(opts.slow_after),
                    "--slow-for", str(opts.slow_for)]
            for r in range(opts.repeat):
                runs += [Run(path, "ack", opts.slow_clients, opts.duration, r, ack),
                         Run(path, "slow", opts.slow_clients, slow_duration, r, slow)]
        if path in STORM_PATHS and opts.storm_clients:
            newcomers = opts.storm_newcomers or opts.storm_clients
            runs += [Run(path, "storm", opts.storm_clients, opts.storm_before, r,
                         ["--storm", str(newcomers), "--storm-deadline", str(opts.storm_deadline)],
                         opts.storm_deadline) for r in range(opts.repeat)]
    return runs


def verdict(result: dict[str, Any]) -> tuple[bool, bool]:
    """(holds, collapsed) for one result."""
    p99 = result["freshness_ms"]["p99"]
    all_in = result["connected"] == result["clients"]
    holds = (all_in and result["errors"]["total"] == 0 and result["gaps"] == 0 and p99 is not None
             and p99 <= HOLD_P99_MS)
    collapsed = result["connected"] < 0.9 * result["clients"] or p99 is None or p99 > COLLAPSE_P99_MS
    return holds, collapsed


class Runner:
    """Executes a plan: infrastructure per path, a fresh server per run, one client per run."""

    def __init__(self, opts: argparse.Namespace, bench: Bench, session: dict[str, Any], pinning: Pinning) -> None:
        self.opts = opts
        self.bench = bench
        self.session = session
        self.pinning = pinning
        self.records: list[dict[str, Any]] = []
        self.collapsed: dict[tuple[str, str], int] = {}

    def execute(self, runs: list[Run]) -> list[dict[str, Any]]:
        started = time.monotonic()
        total = len(runs)
        current: str | None = None
        infra: list[Proc] = []
        infra_env: dict[str, str] = {}
        try:
            for i, run in enumerate(runs):
                left = sum(r.estimate(self.opts.connect_rate) for r in runs[i:] if not self.beyond(r))
                header(i, total, run, time.monotonic() - started, left)
                if self.beyond(run):
                    at = self.collapsed[(run.path, run.case)]
                    print(f"    skipped: {run.path} collapsed at {at} clients", file=sys.stderr)
                    self.keep({**self.session, "path": run.path, "case": run.case, "n": run.clients,
                               "repeat": run.repeat, "skipped": f"collapsed at {at}", "collapsed_at": at})
                    continue
                if run.path != current:
                    self.bench.stop(*reversed(infra))
                    infra, infra_env = PATHS[run.path].start_infra(self.bench)
                    current = run.path
                self.one(run, infra, infra_env)
        finally:
            self.bench.stop(*reversed(infra))
        return self.records

    def one(self, run: Run, infra: list[Proc], infra_env: dict[str, str]) -> None:
        spec = PATHS[run.path]
        deployment: Deployment | None = None
        cmd: list[str] = []
        load_before = [round(x, 2) for x in os.getloadavg()]
        try:
            deployment = spec.start_server(self.bench, infra_env)
            for proc in deployment.servers:
                self.pinning.serve(proc)
            if run.case == "overload":  # busy loops where the server runs: it gets a share of its core
                for i in range(self.opts.busy):
                    busy = self.bench.start(f"busy-{i}", [PY, "-c", "while True: pass"], {})
                    self.pinning.serve(busy)
                    deployment.others.append(busy)
            time.sleep(1.0)  # let it settle before the idle RSS is read
            base = sum(rss_tree(proc.pid) for proc in deployment.servers)
            cmd = [PY, "-m", "benchmarks.loadclient", "--url", deployment.url, "--clients", str(run.clients),
                   "--duration", str(run.duration), "--dialect", spec.dialect, "--connect-rate",
                   str(self.opts.connect_rate), "--server-rss-base", str(base), "--label",
                   f"{run.path} {run.case} N={run.clients}", *run.extra]
            for proc in deployment.servers:  # several app servers: their CPU and RSS are summed
                cmd += ["--server-pid", str(proc.pid)]
            if self.opts.procs > 1:
                cmd += ["--procs", str(self.opts.procs)]
            for proc in [*([deployment.proxy] if deployment.proxy else []), *infra]:
                cmd += ["--aux-pid", str(proc.pid)]
            budget = run.clients / self.opts.connect_rate + 30 + 2 + run.duration + run.after + 90
            result = run_client(cmd, budget)
            dead = [proc for proc in deployment.procs if not proc.alive()]
            if dead:
                raise RuntimeError(f"{dead[0].name} died during the run:\n{dead[0].tail()}")
            holds, collapsed = verdict(result)
            if run.case == "storm":
                holds = storm.met(result["storm"])
            record = {**self.session, "path": run.path, "case": run.case, "n": run.clients, "repeat": run.repeat,
                      "holds": holds, "collapsed": collapsed, **result}
            if deployment.info:
                record["deployment"] = deployment.info
            if deployment.metrics:
                record["hub"] = hub_counts(deployment.metrics)
            if run.case == "overload":
                record["busy"] = self.opts.busy
            if deployment.proxy:
                record["proxy"] = proxy_cost(result, deployment.proxy.pid)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as exc:
            print(f"    failed: {exc}", file=sys.stderr)
            record = {**self.session, "path": run.path, "case": run.case, "n": run.clients, "repeat": run.repeat,
                      "holds": False, "collapsed": True, "failed": str(exc).splitlines()[0][:300]}
            collapsed = True
        finally:
            if deployment:
                self.bench.stop(*deployment.procs)
        record["command"] = shlex.join(["python", *cmd[1:]]) if cmd else ""
        record["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        record["loadavg_before"] = load_before
        self.keep(record)
        if collapsed and run.case in ("board", "watchlist"):
            self.collapsed[(run.path, run.case)] = run.clients

    def beyond(self, run: Run) -> bool:
        """True for a run at a larger N than one where its path collapsed (its repeats still run)."""
        at = self.collapsed.get((run.path, run.case))
        return at is not None and run.case in ("board", "watchlist") and run.clients > at

    def keep(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        append_result(self.opts.results_dir, record)


def proxy_cost(result: dict[str, Any], pid: int) -> dict[str, Any]:
    """The proxy's CPU over the measure window (the load client reports it among the ``aux`` pids),
    per delivered frame, and the cost of a frame with it: app servers + proxy."""
    cpu = next((e["cpu_s"] for e in result.get("aux", {}).get("each", []) if e["pid"] == pid), None)
    frames, window = result.get("frames"), result.get("duration_s")
    server_cpu = result.get("server", {}).get("cpu_s")
    if cpu is None or not frames or not window:
        return {"pid": pid}
    return {"pid": pid, "cpu_s": cpu, "cpu_pct": round(100 * cpu / window, 1),
            "us_per_frame": round(1e6 * cpu / frames, 2),
            "total_us_per_frame": round(1e6 * (cpu + server_cpu) / frames, 2) if server_cpu is not None else None}


def run_client(cmd: list[str], budget: float) -> dict[str, Any]:
    """Run the load client and return its JSON line. On a timeout or an interrupt it gets SIGTERM
    (it then stops its own client processes), and SIGKILL if that does not end it."""
    client = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=base_env())
    try:
        out, _ = client.communicate(timeout=budget)
    except BaseException:
        client.terminate()
        try:
            client.wait(timeout=15)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
        raise
    if client.returncode:
        raise RuntimeError(f"load client exited with {client.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def header(i: int, total: int, run: Run, elapsed: float, left: float) -> None:
    """The matrix's progress line, before each run (the client draws its own bar below it)."""
    width = 24
    filled = int(width * i / total)
    print(f"[{'#' * filled}{'.' * (width - filled)}] {i + 1}/{total}  {run.path} {run.case} N={run.clients}"
          f"{f' (repeat {run.repeat + 1})' if run.repeat else ''}  {minutes(elapsed)} elapsed, about "
          f"{minutes(left)} left", file=sys.stderr, flush=True)


def shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def results_file(directory: Path, date: str) -> Path:
    return directory / f"{date[:10]}.jsonl"


def append_result(directory: Path, record: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(results_file(directory, record["date"]), "a") as fh:
        fh.write(json.dumps(record, separators=(",", ":")) + "\n")


# Machine and session


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, kernel, Python and the versions of what is measured."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        versions["redis-server"] = next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # `nginx -v` answers on stderr
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10).stderr
        versions["nginx"] = out.strip().rpartition("/")[2]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2**30, 1), "kernel": platform.release(),
            "python": platform.python_version(), "versions": versions}


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{'+changes' if dirty else ''}" if head else "unknown"


# Command line


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text.strip() else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=",".join(FANOUT),
                        help="comma-separated subset of: " + ", ".join(PATHS) + " (default: all but the cluster-* "
                        "paths, which `make bench-cluster` runs)")
    parser.add_argument("--clients", type=int_list, default=None, help="whole-board client counts "
                        "(default 100,300,1000,2000,5000)")
    parser.add_argument("--watchlist-clients", type=int_list, default=None,
                        help="client counts of the watchlist case (default 1000,5000; empty: none)")
    parser.add_argument("--watchlist-symbols", type=int, default=10, help="symbols per watchlist (default 10)")
    parser.add_argument("--slow-clients", type=int, default=None,
                        help="client count of the slow-consumer case, ours only (default 1000; 0: none)")
    parser.add_argument("--slow-fraction", type=float, default=0.05)
    parser.add_argument("--slow-after", type=float, default=None, help="seconds (default 5)")
    parser.add_argument("--slow-for", type=float, default=None, help="seconds (default 30)")
    parser.add_argument("--overload-clients", type=int_list, default=[],
                        help="client counts of the overload case, ours only: the whole board while --busy "
                             "busy loops share the server's core (default none; `make bench-overload`: 5000)")
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes of the overload case (default 2)")
    parser.add_argument("--storm-clients", type=int, default=None,
                        help="steady whole-board clients of the storm case, on " + ", ".join(STORM_PATHS)
                        + " (default 2500; 0: none)")
    parser.add_argument("--storm-newcomers", type=int, default=None,
                        help="clients that connect all at once in the storm (default: as many as --storm-clients)")
    parser.add_argument("--storm-before", type=float, default=None,
                        help="seconds the steady clients are measured before the storm (default 10)")
    parser.add_argument("--storm-deadline", type=float, default=30.0,
                        help="seconds a newcomer has to be live before it counts as lost (default 30)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the report shows medians")
    parser.add_argument("--no-pin", action="store_true",
                        help="share every core (the default gives the server process(es) a core of their own "
                             "and the load client, Redis and the feed the rest, on a machine with two or more)")
    parser.add_argument("--duration", type=float, default=None, help="measure window in seconds (default 20)")
    parser.add_argument("--connect-rate", type=float, default=500.0, help="new connections a second (default 500)")
    parser.add_argument("--procs", type=int, default=1, help="load client processes (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="a small matrix (every path and case at 300 clients, 4 s each: about two minutes) "
                             "for a smoke run; writes under var/bench/")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where the jsonl goes (default benchmarks/results, var/bench with --quick)")
    parser.add_argument("--report", type=Path, default=None,
                        help="the Markdown report to regenerate (default docs/PERFORMANCE.md, "
                             "var/bench/PERFORMANCE.md with --quick); its PNG goes next to it")
    parser.add_argument("--from-results", type=Path, metavar="JSONL",
                        help="run nothing: regenerate the report from this file's last session (or --session)")
    parser.add_argument("--session", help="with --from-results: the session to report, or several (A,B): cells "
                        "that B ran again replace A's")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its time estimate, run nothing")
    opts = parser.parse_args(argv)
    quick = opts.quick
    defaults = {
        "clients": [300] if quick else [100, 300, 1000, 2000, 5000],
        "watchlist_clients": [300] if quick else [1000, 5000],
        "slow_clients": 300 if quick else 1000,
        "slow_after": 2.0 if quick else 5.0,
        "slow_for": 4.0 if quick else 30.0,
        "storm_clients": 300 if quick else 2500,
        "storm_before": 3.0 if quick else 10.0,
        "duration": 4.0 if quick else 20.0,
        "results_dir": ROOT / ("var/bench" if quick else "benchmarks/results"),
        "report": ROOT / ("var/bench/PERFORMANCE.md" if quick else "docs/PERFORMANCE.md"),
    }
    for name, value in defaults.items():
        if getattr(opts, name) is None:
            setattr(opts, name, value)
    opts.slow_tail = 2.0 if quick else 10.0
    opts.paths = [p.strip() for p in opts.paths.split(",") if p.strip()]
    unknown = [p for p in opts.paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; known: {', '.join(PATHS)}")
    if opts.repeat < 1:
        parser.error("--repeat must be at least 1")
    return opts


def load_sessions(path: Path, sessions: str | None) -> list[dict[str, Any]]:
    """The records of the last session in ``path``, or of the given comma-separated sessions: each
    later one replaces the cells (path, case, N) it ran again in the earlier ones."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        raise SystemExit(f"{path}: no records")
    wanted = sessions.split(",") if sessions else [records[-1]["session"]]
    merged: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for session in wanted:
        mine = [r for r in records if r.get("session") == session]
        if not mine:
            raise SystemExit(f"{path}: no session {session!r}")
        fresh: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
        for r in mine:
            fresh.setdefault((r.get("suite", "fanout"), r["path"], r["case"], r["n"]), []).append(r)
        merged.update(fresh)
    return [r for cell in merged.values() for r in cell]


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) unwind like Ctrl-C, so that ``finally`` stops what was started."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    from benchmarks.report import write_report

    if opts.from_results:
        records = load_sessions(opts.from_results, opts.session)
        write_report(records, opts.report)
        print(f"report: {shown(opts.report)} ({len(records)} runs)", file=sys.stderr)
        return 0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it: 5,000 sockets each
    paths = []
    for name in opts.paths:
        missing = PATHS[name].missing()
        if missing:
            print(f"skipping {name}: benchmarks/baseline/{missing[0]}.py does not exist yet", file=sys.stderr)
        else:
            paths.append(name)
    now = dt.datetime.now(dt.UTC)
    pinning = Pinning.choose(not opts.no_pin)  # chosen once: entering it narrows this process's own cores
    session = {
        "session": now.strftime("%Y%m%dT%H%M%SZ"), "date": now.isoformat(timespec="seconds"),
        # A session that runs a cluster path reports in the cluster section of the report only
        # (its ours-* runs are the reference without nginx there); any other in the fan-out part.
        "suite": "cluster" if any(p in CLUSTER_PATHS or p in SHARED_PATHS for p in paths)
        else "overload" if opts.overload_clients else "fanout",
        "git": git_commit(), "machine": machine_info(),
        "bench_command": shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
        "market": {"symbols": SYMBOLS, "rate": RATE, "batch_ms": BATCH_MS},
        "settings": {"repeat": opts.repeat, "duration": opts.duration, "connect_rate": opts.connect_rate,
                     "procs": opts.procs, "quick": opts.quick, "slow_fraction": opts.slow_fraction,
                     "slow_after": opts.slow_after, "slow_for": opts.slow_for, "storm_before": opts.storm_before,
                     "storm_deadline": opts.storm_deadline},
        "results": shown(results_file(opts.results_dir, now.isoformat())),
        "cores": pinning.describe(),
    }
    runs = plan(opts, paths)
    estimate = sum(r.estimate(opts.connect_rate) for r in runs)
    print(f"{len(runs)} runs over {', '.join(paths)}; at most about {minutes(estimate)} "
          f"(less where a path collapses); session {session['session']}", file=sys.stderr)
    if opts.dry_run:
        for run in runs:
            print(f"  {run.path:<17} {run.case:<9} N={run.clients:<5} {run.duration:>4.0f} s  {' '.join(run.extra)}")
        return 0
    logdir = ROOT / "var" / "bench" / "logs" / session["session"]
    logdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(logdir)
    pinning.enter()
    print(session["cores"], file=sys.stderr)
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with terminated_as_interrupt():
            records = Runner(opts, bench, session, pinning).execute(runs)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what was started", file=sys.stderr)
        bench.cleanup()
        return 130
    finally:
        bench.cleanup()
    write_report(records, opts.report)
    print(f"done in {minutes(time.monotonic() - started)}: {len(records)} runs in {session['results']}; report "
          f"{shown(opts.report)}; logs {shown(logdir)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
