"""uPlot or a small canvas routine for the board's sparklines: ``python -m benchmarks.sparklines``.

Both draw the same thing in headless Chromium: 200 sparklines of 96×24 CSS pixels, each the
last 30 one-minute closes plus a live point, redrawn in full (as the board does, at most once a
second) ``--passes`` times. Reported per renderer: the time to create the 200 charts, the
median and worst time of one full redraw of all 200 (until the browser's task queue is reached
again, so uPlot's deferred commit is included), and the main thread's busy time over the run
(``Performance.getMetrics`` ``TaskDuration``). uPlot comes from the npm registry at the pinned
version (``npm pack`` into a temporary directory); nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.page import CHROMIUM, CHROMIUM_ARGS, machine

UPLOT_VERSION = "1.6.32"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body { margin: 0; font: 12px sans-serif } .row { display: flex; height: 25px; align-items: center }
.row span { width: 60px } canvas, .u { width: 96px; height: 24px; display: block }
.uplot { line-height: 0 } .u-legend { display: none }
</style>%s</head><body><div id="rows"></div><script>%s</script></body></html>"""

# The same drawing routine as the page's (ticker/static/ticker/board.js, drawSpark), inlined here.
HARNESS = r"""
const N = %(rows)d, POINTS = 31, W = 96, H = 24;
const series = [];
for (let i = 0; i < N; i++) {
  let p = 50 + i; const xs = [], ys = [];
  for (let k = 0; k < POINTS; k++) { xs.push(k * 60); p *= 1 + (Math.random() - 0.5) * 0.01; ys.push(p); }
  series.push([xs, ys]);
}
function jiggle() {
  for (const [, ys] of series) ys[ys.length - 1] *= 1 + (Math.random() - 0.5) * 0.002;
}
const tick = () => new Promise((r) => setTimeout(r, 0));
%(draw)s
window.runBench = async (passes) => {
  const host = document.getElementById('rows');
  const t0 = performance.now();
  const charts = [];
  for (let i = 0; i < N; i++) {
    const row = document.createElement('div'); row.className = 'row';
    row.innerHTML = '<span>S' + i + '</span>'; host.appendChild(row);
    charts.push(create(row, series[i]));
  }
  await tick();
  const created = performance.now() - t0;
  const times = [];
  for (let k = 0; k < passes; k++) {
    jiggle();
    const s = performance.now();
    for (let i = 0; i < N; i++) redraw(charts[i], series[i]);
    await tick();
    times.push(performance.now() - s);
    await new Promise((r) => requestAnimationFrame(() => r()));
  }
  times.sort((a, b) => a - b);
  return {create_ms: created, median_ms: times[times.length >> 1], worst_ms: times[times.length - 1]};
};
"""

CANVAS = r"""
const dpr = window.devicePixelRatio || 1;
function create(row, s) {
  const c = document.createElement('canvas'); c.width = W * dpr; c.height = H * dpr; row.appendChild(c);
  const chart = {ctx: c.getContext('2d')}; redraw(chart, s); return chart;
}
function redraw(chart, [, ys]) {
  const ctx = chart.ctx; const w = W * dpr, h = H * dpr;
  let lo = Infinity, hi = -Infinity;
  for (const y of ys) { if (y < lo) lo = y; if (y > hi) hi = y; }
  const span = hi - lo || 1, pad = 2 * dpr, step = (w - 2 * pad) / (ys.length - 1);
  ctx.clearRect(0, 0, w, h);
  ctx.beginPath();
  for (let i = 0; i < ys.length; i++) {
    const x = pad + i * step, y = pad + (h - 2 * pad) * (1 - (ys[i] - lo) / span);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  }
  ctx.lineWidth = 1.25 * dpr; ctx.strokeStyle = ys[ys.length - 1] >= ys[0] ? '#1a7f37' : '#cf222e'; ctx.stroke();
}
"""

UPLOT = r"""
const opts = {width: W, height: H, pxAlign: 0, cursor: {show: false}, legend: {show: false}, select: {show: false},
  scales: {x: {time: false}}, axes: [{show: false}, {show: false}],
  series: [{}, {stroke: '#1a7f37', width: 1.25, points: {show: false}}]};
function create(row, s) { const el = document.createElement('div'); el.className = 'u'; row.appendChild(el);
  return new uPlot(opts, s, el); }
function redraw(chart, s) { chart.setData(s); }
"""


def run(page: Any, html: str, passes: int) -> dict[str, float]:
    page.set_content(html)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable", {"timeDomain": "timeTicks"})
    before = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    result = page.evaluate("(n) => window.runBench(n)", passes)
    after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    result["busy_ms_per_pass"] = (after["TaskDuration"] - before["TaskDuration"]) * 1000 / passes
    return {k: round(v, 2) for k, v in result.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--passes", type=int, default=60)
    opts = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ticker-sparklines-"))
    try:
        subprocess.run(["npm", "pack", "--silent", f"uplot@{UPLOT_VERSION}"], cwd=tmp, check=True,
                       capture_output=True)
        with tarfile.open(next(tmp.glob("uplot-*.tgz"))) as tar:
            tar.extractall(tmp, filter="data")
        uplot_js = (tmp / "package" / "dist" / "uPlot.iife.min.js").read_text()
        uplot_css = (tmp / "package" / "dist" / "uPlot.min.css").read_text()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, head, draw in (
                ("canvas", "", CANVAS),
                (f"uplot {UPLOT_VERSION}", f"<style>{uplot_css}</style><script>{uplot_js}</script>", UPLOT),
            ):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                script = HARNESS % {"rows": opts.rows, "draw": draw}
                results[name] = run(page, PAGE % (head, script), opts.passes)
                page.close()
        finally:
            browser.close()
    print(json.dumps({"bench": "sparklines", "rows": opts.rows, "passes": opts.passes, "machine": machine(),
                      "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
