"""Soak: hold many clients with churn against `make cluster`'s topology and look for growth.

``python -m benchmarks.soak [--clients 1000] [--duration 1800] [--churn 0.03]`` (``make soak``)
starts the same cluster as ``benchmarks.chaos`` (the runner ``python -m deploy.cluster start``
as a child: Redis with Sentinel, two runfeed, ``--workers`` daphne app servers, nginx, on free loopback
ports, in a scratch directory), connects ``--clients`` page-like clients through nginx
(``benchmarks.pageclient``: whole board, reconnect and resume as the page does, the safety check
on every frame), and for ``--duration`` seconds lets ``--churn`` of them per minute come and go,
spread over the minute: half leave as a closed tab does (close 1000) and come back as a new page
(``sub``), half lose their connection (reset) and come back as the page does (backoff, then
``resume``). Nothing is killed.

Every ``--sample`` seconds (60) it records, for each app server: its RSS (``VmRSS``), its open
file descriptors (``/proc/PID/fd``) and the clients connected to it (each client knows its
server from ``hello.node``); and for the clients: the p50/p99/max freshness of the rows they got
in that minute (receipt time minus the row's ``ts``), how many are live, reconnects, safety
violations, seq gaps and errors.

At the end it fits a line (least squares) through each server's RSS and through its descriptors
beyond its clients (fds minus connected clients: the server's own files, which churn must not
grow) over the last two thirds of the run, and flags **growth**:

- RSS: slope above ``--rss-mb-per-hour`` (10 MB/h) *and* a fitted rise over the fitted window
  above ``--rss-floor-mb`` (2 MB; below that, allocator noise is all a short run can see);
- descriptors: a fitted rise over the fitted window above ``--fd-floor`` (5).

It prints a table per sample and the verdict on stderr, one JSON object on stdout, and exits 1
on growth, a safety violation or a seq gap (2 if the cluster itself failed). Not run by the tests
(30 minutes); docs/RELIABILITY.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .chaos import RunnerCluster, cpu_seconds, in_cluster, run_and_report, sleep_until
from .pageclient import PageClient, Pool, now_ms
from .wsclient import percentiles


def proc_stats(pid: int) -> tuple[float, int] | None:
    """(RSS in MB, open file descriptors) of a running process, from /proc; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(kb / 1024, 1), fds


class Sampler:
    """One sample per interval: the app servers' RSS and descriptors, the clients' view."""

    def __init__(self, cluster: RunnerCluster, pool: Pool) -> None:
        self.cluster = cluster
        self.pool = pool
        self.samples: list[dict[str, Any]] = []
        self.hist: Counter[int] = Counter()  # freshness of every row over the whole run
        self.seen = {"events": 0, "gaps": 0, "episodes": 0}

    def take(self, t: float, churned: int) -> dict[str, Any]:
        pool = self.pool
        counts = pool.group.summary()
        hist = counts["hist"]
        self.hist.update(hist)
        p50, p99 = percentiles(hist, (50, 99))
        pool.group.reset()
        now = now_ms()
        on: Counter[str] = Counter(c.node for c in pool.clients if c.board.connected)
        servers = {}
        for name in self.cluster.webs:
            pid = self.cluster.pid(name)
            stats = proc_stats(pid) if pid else None
            servers[name] = {"pid": pid, "rss_mb": stats[0] if stats else None, "fds": stats[1] if stats else None,
                             "clients": on.get(name, 0)}
        events = pool.events[self.seen["events"]:]
        errors = Counter(what for _, _, what in events if not what.startswith(("closed ", "churn")))
        sample = {
            "t_s": round(t, 1), "servers": servers,
            "live": sum(1 for c in pool.clients if c.board.live(now)),
            "freshness_ms": {"p50": p50, "p99": p99, "max": counts["fmax"] if counts["fmax"] >= 0 else None},
            "frames": counts["frames"], "churned": churned,
            "reconnects": sum(1 for _, _, what in events if what.startswith("closed ")),
            "violations": len(pool.episodes) - self.seen["episodes"], "gaps": len(pool.gaps) - self.seen["gaps"],
            "errors": dict(errors),
        }
        self.seen = {"events": len(pool.events), "gaps": len(pool.gaps), "episodes": len(pool.episodes)}
        self.samples.append(sample)
        return sample


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope per hour, fitted rise over the points' span) of a least-squares line; None below 3 points."""
    if len(points) < 3:
        return None
    xs = [x for x, _ in points]
    slope, _ = statistics.linear_regression(xs, [y for _, y in points])
    return slope * 3600, slope * (xs[-1] - xs[0])


def growth(samples: list[dict[str, Any]], opts: argparse.Namespace) -> dict[str, Any]:
    """Per app server: the fits over the last two thirds of the run, and whether they flag growth."""
    end = samples[-1]["t_s"]
    tail = [s for s in samples if s["t_s"] >= end / 3]
    out: dict[str, Any] = {}
    for name in samples[0]["servers"]:
        rows = [s["servers"][name] for s in tail]
        pids = {r["pid"] for r in rows}
        rss = fit([(s["t_s"], s["servers"][name]["rss_mb"]) for s in tail if s["servers"][name]["rss_mb"] is not None])
        own = fit([(s["t_s"], s["servers"][name]["fds"] - s["servers"][name]["clients"]) for s in tail
                   if s["servers"][name]["fds"] is not None])
        flags = []
        if len(pids) > 1:
            flags.append(f"restarted during the run (pids {sorted(p or 0 for p in pids)})")
        if rss and rss[0] > opts.rss_mb_per_hour and rss[1] > opts.rss_floor_mb:
            flags.append(f"RSS grows {rss[0]:.1f} MB/h ({rss[1]:+.1f} MB over the fitted window)")
        if own and own[1] > opts.fd_floor:
            flags.append(f"descriptors beyond its clients grow {own[1]:+.1f} over the fitted window")
        out[name] = {
            "window_s": [tail[0]["t_s"], end], "samples": len(tail),
            "rss_mb": {"first": rows[0]["rss_mb"], "last": rows[-1]["rss_mb"],
                       "slope_mb_per_h": round(rss[0], 2) if rss else None,
                       "rise_mb": round(rss[1], 2) if rss else None},
            "own_fds": {"first": rows[0]["fds"] - rows[0]["clients"] if rows[0]["fds"] is not None else None,
                        "last": rows[-1]["fds"] - rows[-1]["clients"] if rows[-1]["fds"] is not None else None,
                        "rise": round(own[1], 2) if own else None},
            "grew": flags,
        }
    return out


async def churn_loop(pool: Pool, per_minute: float, rng: random.Random, counter: list[int]) -> None:
    """Every second, the due share of ``per_minute`` clients leave and come back."""
    owed = 0.0
    while True:
        await asyncio.sleep(1.0)
        owed += per_minute / 60
        while owed >= 1:
            owed -= 1
            client: PageClient = rng.choice(pool.clients)
            if client.conn is None:
                continue
            counter[0] += 1
            if counter[0] % 2:  # a tab closed, and a new page opened
                pool.event("churn reload", client.index)
                client.reload = True
                asyncio.create_task(client.close())  # noqa: RUF006 - close() is bounded and ends by itself
            else:  # a network blip: reset, then the page reconnects and resumes
                pool.event("churn reset", client.index)
                if client.conn.transport is not None:
                    client.conn.transport.abort()


async def soak(opts: argparse.Namespace, cluster: RunnerCluster) -> dict[str, Any]:
    rng = random.Random(opts.seed)
    pool = Pool(cluster.ws_url)
    say(f"connecting {opts.clients} clients to {cluster.ws_url}")
    ramp = await pool.connect(opts.clients, opts.connect_rate, timeout=120)
    sampler = Sampler(cluster, pool)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    churned = [0]
    churner = asyncio.create_task(churn_loop(pool, opts.clients * opts.churn, rng, churned))
    say(f"{opts.clients} clients live in {ramp:.1f} s; {opts.clients * opts.churn:g} leave and come back "
        f"each minute; a sample every {opts.sample:g} s for {opts.duration:g} s")
    print(header(cluster.webs), file=sys.stderr, flush=True)
    k = 0
    while True:
        sample = sampler.take(time.monotonic() - t0, churned[0])
        print(line(sample), file=sys.stderr, flush=True)
        k += 1
        if k * opts.sample > opts.duration + 1e-6:
            break
        await sleep_until(t0 + k * opts.sample, cluster)
    window, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    churner.cancel()
    await asyncio.gather(churner, return_exceptions=True)
    await pool.stop()
    samples = sampler.samples
    grew = growth(samples, opts)
    p50, p99 = percentiles(dict(sampler.hist), (50, 99))
    totals = {"violations": len(pool.episodes), "gaps": len(pool.gaps), "churned": churned[0],
              "errors": dict(Counter(what for _, _, what in pool.events if not what.startswith(("closed ", "churn"))))}
    failures = [f"{name}: {flag}" for name, g in grew.items() for flag in g["grew"]]
    if totals["violations"]:
        failures.append(f"{totals['violations']} safety violation(s)")
    if totals["gaps"]:
        failures.append(f"{totals['gaps']} seq gap(s)")
    return {
        "clients": opts.clients, "duration_s": round(window, 1), "churn_per_min": opts.churn, "sample_s": opts.sample,
        "connect_s": round(ramp, 1), "samples": samples, "growth": grew, "totals": totals,
        "freshness_ms": {"p50": p50, "p99": p99, "max_p99_of_a_minute": max(
            (s["freshness_ms"]["p99"] or 0 for s in samples[1:]), default=None)},
        "thresholds": {"rss_mb_per_hour": opts.rss_mb_per_hour, "rss_floor_mb": opts.rss_floor_mb,
                       "fd_floor": opts.fd_floor},
        "client_cpu_pct": round(100 * cpu / window, 1) if window else None,
        "ok": not failures, "failures": failures,
    }


def header(webs: Sequence[str]) -> str:
    cols = "".join(f"  {name + ' RSS MB/fds/clients':>26}" for name in webs)
    return (f"{'t (s)':>7}{cols}  {'live':>5}  {'fresh p50/p99/max ms':>20}  {'churned':>7}  {'reconn':>6}  "
            "viol  gaps  errors")


def line(s: dict[str, Any]) -> str:
    cols = "".join(f"  {str(v['rss_mb']) + ' / ' + str(v['fds']) + ' / ' + str(v['clients']):>26}"
                   for v in s["servers"].values())
    f = s["freshness_ms"]
    fresh = f"{f['p50']}/{f['p99']}/{f['max']}"
    errors = ", ".join(f"{k} ×{v}" for k, v in sorted(s["errors"].items())) or "-"
    return (f"{s['t_s']:>7.0f}{cols}  {s['live']:>5}  {fresh:>20}  {s['churned']:>7}  {s['reconnects']:>6}  "
            f"{s['violations']:>4}  {s['gaps']:>4}  {errors}")


def verdict(result: dict[str, Any]) -> str:
    lines = []
    for name, g in result["growth"].items():
        r, fd = g["rss_mb"], g["own_fds"]
        span = f"{g['window_s'][0]:.0f}-{g['window_s'][1]:.0f} s"
        lines.append(f"{name}: RSS {r['first']} -> {r['last']} MB over {span}, "
                     f"fit {r['slope_mb_per_h']} MB/h ({r['rise_mb']} MB); own descriptors {fd['first']} -> "
                     f"{fd['last']} (fit {fd['rise']}): " + ("; ".join(g["grew"]) or "no growth"))
    t, f = result["totals"], result["freshness_ms"]
    lines.append(f"{result['clients']} clients, {result['duration_s']} s, {t['churned']} churned; freshness p50 "
                 f"{f['p50']} ms, p99 {f['p99']} ms (worst minute's p99 {f['max_p99_of_a_minute']} ms); violations "
                 f"{t['violations']}, gaps {t['gaps']}, errors {t['errors'] or '-'}; "
                 f"client CPU {result['client_cpu_pct']} %")
    lines.append("OK" if result["ok"] else "FAILED: " + "; ".join(result["failures"]))
    return "\n".join(lines)


def say(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000, help="page-like clients (default %(default)s)")
    p.add_argument("--duration", type=float, default=1800.0, help="seconds (default %(default)s)")
    p.add_argument("--churn", type=float, default=0.03,
                   help="fraction of the clients that leave and come back each minute (default %(default)s)")
    p.add_argument("--sample", type=float, default=60.0, help="seconds between samples (default %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="app servers (default %(default)s)")
    p.add_argument("--rss-mb-per-hour", type=float, default=10.0,
                   help="RSS slope that counts as growth (default %(default)s)")
    p.add_argument("--rss-floor-mb", type=float, default=2.0,
                   help="…when the fitted rise over the window is also above this (default %(default)s)")
    p.add_argument("--fd-floor", type=float, default=5.0,
                   help="fitted rise of a server's own descriptors that counts as growth (default %(default)s)")
    p.add_argument("--connect-rate", type=float, default=200.0, help="new clients a second (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the churn (default %(default)s)")
    p.add_argument("--workdir", type=Path, help="the cluster's files (default: a new temporary directory, "
                   "removed after a run that passed)")
    p.add_argument("--json", type=Path, help="also write the JSON summary to this file")
    return p


def run(opts: argparse.Namespace, workdir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    return in_cluster(opts, workdir, env, soak)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    opts = p.parse_args(argv)
    if opts.clients < 1 or opts.sample <= 0 or opts.duration < 3 * opts.sample:
        p.error("need --clients >= 1 and --duration of at least three --sample periods")
    return run_and_report("soak", run, verdict, opts)


if __name__ == "__main__":
    sys.exit(main())
