"""How much of the browser's main thread the board costs under load: ``make bench-page``.

A real server in the embedded mode (SQLite, in-memory layer, feed in process) lists N symbols
(``setup_demo --symbols N``, 200 by default) and ticks at ``--rate`` ticks a second over the
market in 100 ms batches, so the page gets 10 ``q`` frames a second, each changing about
``rate / 10`` rows. Debian's headless Chromium opens the board, waits until it is live and warm,
then measures for ``--seconds``:

- the renderer's main-thread busy share: ``Performance.getMetrics`` of the Chrome DevTools
  Protocol, ``TaskDuration`` over the ``Timestamp`` wall time of the window (with the script,
  layout and style shares beside it);
- long tasks (over 50 ms) from a ``PerformanceObserver`` for ``longtask``, registered before
  the page's own script runs: those of the window, and those since the page started loading;
- the frames and rows the page received in the window.

It prints one JSON line and appends it to ``benchmarks/results/page-<date>.jsonl`` with the
machine, the commit and the command line. Every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import PY, ROOT, Proc, base_env, free_port, http_ok, wait_ready

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RESULTS = ROOT / "benchmarks" / "results"

# Registered before any script of the page: every long task of the page's life is kept.
LONGTASK_OBSERVER = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push({start: e.startTime, ms: e.duration});
}).observe({type: 'longtask', buffered: true});
"""
COUNTERS = "() => ({frames: window.tickerState.frames, bytes: window.tickerState.bytes, now: performance.now()})"


def metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "chromium": chromium, "loadavg_1m": round(os.getloadavg()[0], 2)}


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "ticker/static", "templates"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + ("+dirty" if dirty else "")


def prepare(tmp: Path, symbols: int, rate: int) -> dict[str, str]:
    env = base_env()
    env.update(DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", TICKER_VAR_DIR=str(tmp / "var"),
               DJANGO_SUPERUSER_PASSWORD="x", TICKER_LOG_LEVEL="WARNING", TICKER_FEED_RATE=str(rate))
    for args in (["migrate", "-v0"], ["setup_demo", "--symbols", str(symbols)]):
        done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return env


def top_events(trace_path: Path, limit: int = 15) -> list[tuple[str, float]]:
    """Total duration by name of the complete events on the renderer's main thread (nested events
    count in their parents too: read it as where time goes, not as shares that add up)."""
    events = json.loads(trace_path.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    main = {(e["pid"], e["tid"]) for e in events
            if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"}
    totals: dict[str, float] = {}
    for e in events:
        if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in main:
            totals[e["name"]] = totals.get(e["name"], 0.0) + e.get("dur", 0) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:limit]


def measure(url: str, seconds: float, warmup: float, width: int, trace: Path | None = None,
            reduced_motion: bool = False) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800},
                                    reduced_motion="reduce" if reduced_motion else "no-preference")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.add_init_script(LONGTASK_OBSERVER)
            page.goto(url)
            page.wait_for_function("() => window.tickerState && window.tickerState.state === 'live'", timeout=30_000)
            rows = page.evaluate("() => document.querySelectorAll('#board tbody tr[data-symbol]').length")
            page.wait_for_timeout(warmup * 1000)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable", {"timeDomain": "timeTicks"})
            if trace:
                browser.start_tracing(page=page, path=str(trace),
                                      categories=["devtools.timeline", "disabled-by-default-devtools.timeline"])
            before, seen = metrics(cdp), page.evaluate(COUNTERS)
            page.wait_for_timeout(seconds * 1000)
            after, done = metrics(cdp), page.evaluate(COUNTERS)
            if trace:
                browser.stop_tracing()
            every_long_task = page.evaluate("() => window.__longTasks")
            long_tasks = [t for t in every_long_task if t["start"] >= seen["now"]]
            state = page.evaluate("() => window.tickerState.state")
        finally:
            browser.close()
    wall = after["Timestamp"] - before["Timestamp"]

    def share(name: str) -> float:
        return round(100 * (after[name] - before[name]) / wall, 1)

    window_s = (done["now"] - seen["now"]) / 1000
    return {
        "rows": rows,
        "wall_s": round(wall, 2),
        "main_thread_busy_pct": share("TaskDuration"),
        "script_pct": share("ScriptDuration"),
        "layout_pct": share("LayoutDuration"),
        "style_pct": share("RecalcStyleDuration"),
        "layouts_per_s": round((after["LayoutCount"] - before["LayoutCount"]) / wall, 1),
        "style_recalcs_per_s": round((after["RecalcStyleCount"] - before["RecalcStyleCount"]) / wall, 1),
        "frames_per_s": round((done["frames"] - seen["frames"]) / window_s, 1),
        "bytes_per_s": round((done["bytes"] - seen["bytes"]) / window_s),
        "long_tasks": len(long_tasks),
        "longest_task_ms": round(max((t["ms"] for t in long_tasks), default=0.0), 1),
        "long_tasks_since_load": len(every_long_task),
        "longest_task_since_load_ms": round(max((t["ms"] for t in every_long_task), default=0.0), 1),
        "state_at_end": state,
        "page_errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200, help="rows on the board (default 200)")
    parser.add_argument("--rate", type=int, default=1000, help="ticks a second over the market (default 1000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measure window (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds live before measuring (default 5)")
    parser.add_argument("--width", type=int, default=1280, help="viewport width (default 1280)")
    parser.add_argument("--at", metavar="REV", help="serve the page of this git revision instead of the "
                        "working tree (e.g. the commit before the page changed), on the same database")
    parser.add_argument("--label", default="", help="a name for this run in the results (e.g. before/after)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to benchmarks/results/")
    parser.add_argument("--reduced-motion", action="store_true",
                        help="emulate prefers-reduced-motion: the page does not flash (what the flash costs)")
    parser.add_argument("--trace", type=Path, help="also record a Chrome trace of the window here and print "
                        "the main thread's busiest events (the trace itself costs time: not for the figures)")
    opts = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error("Chromium is not installed (apt-get install chromium)")

    tmp = Path(tempfile.mkdtemp(prefix="ticker-bench-page-"))
    server: Proc | None = None
    try:
        env = prepare(tmp, opts.symbols, opts.rate)
        port = free_port()
        argv = [PY, "-m", "dashboard.serve", "--server", "daphne", "--port", str(port)]
        if opts.at:
            # Another revision's page (and server) on the same database: a before/after pair run
            # back to back on one machine, under the same load.
            tree = tmp / "tree"
            tree.mkdir()
            archive = subprocess.run(["git", "archive", opts.at], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "x", "-C", str(tree)], input=archive, check=True)
            env["PYTHONPATH"] = str(tree)
            server = Proc("daphne", argv, tmp, env=env, cwd=tree)
        else:
            server = Proc("daphne", argv, tmp, env=env)
        url = f"http://127.0.0.1:{port}/"
        wait_ready(server, lambda: http_ok(url + "healthz"), "daphne")
        started = dt.datetime.now(dt.UTC)
        result = measure(url, opts.seconds, opts.warmup, opts.width, opts.trace, opts.reduced_motion)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    record = {
        "bench": "page", "label": opts.label, "date": started.isoformat(timespec="seconds"), "commit": commit(),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.page", *(argv or sys.argv[1:])]),
        "symbols": opts.symbols, "rate": opts.rate, "seconds": opts.seconds, "width": opts.width,
        "reduced_motion": opts.reduced_motion, "at": opts.at or "",
        "machine": machine(), **result,
    }
    if opts.trace:
        for name, ms in top_events(opts.trace):
            print(f"{ms:10.1f} ms  {name}", file=sys.stderr)
        opts.no_save = True
    line = json.dumps(record)
    print(line)
    if not opts.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / f"page-{started:%Y-%m-%d}.jsonl", "a") as fh:
            fh.write(line + "\n")
    verdict = "met" if result["main_thread_busy_pct"] <= 20 and result["longest_task_ms"] <= 50 else "missed"
    print(f"main thread busy {result['main_thread_busy_pct']} %, longest task {result['longest_task_ms']} ms, "
          f"{result['frames_per_s']} frames/s over {result['rows']} rows: target (≤ 20 %, no task > 50 ms) {verdict}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
