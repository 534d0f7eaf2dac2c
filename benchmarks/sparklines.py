"""uPlot, a small canvas routine or a small SVG routine for the board's sparklines:
``python -m benchmarks.sparklines``.

Each draws the same thing in headless Chromium: 200 sparklines of 96×24 CSS pixels, each the
last 30 one-minute closes plus a live point, redrawn in full (as the board does, at most once a
second) ``--passes`` times. Reported per renderer: the time to create the 200 charts, the
median and worst time of one full redraw of all 200 (until the browser's task queue is reached
again, so uPlot's deferred commit is included), the main thread's busy time per pass
(``Performance.getMetrics`` ``TaskDuration``), the page's compositor layers (``LayerTree``), and
what the sparklines cost every *other* frame: the busy time of a frame that only changes one
line of text elsewhere on the page, 10 times a second for 3 s, with the sparklines standing.
uPlot comes from the npm registry at the pinned version (``npm pack`` into a temporary
directory); nothing is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.page import CHROMIUM, CHROMIUM_ARGS, RESULTS, commit, machine

UPLOT_VERSION = "1.6.32"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body { margin: 0; font: 12px sans-serif } .row { display: flex; height: 25px; align-items: center }
.row span { width: 60px } canvas, .u { width: 96px; height: 24px; display: block }
.uplot { line-height: 0 } .u-legend { display: none }
</style>%s</head><body><p id="note">-</p><div id="rows"></div><script>%s</script></body></html>"""

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
window.otherFrames = async () => {
  const note = document.getElementById('note');
  for (let k = 0; k < 30; k++) {
    await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => requestAnimationFrame(() => { note.textContent = 'tick ' + k; r(); }));
  }
};
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

SVG = r"""
const NS = 'http://www.w3.org/2000/svg';
function create(row, s) {
  const svg = document.createElementNS(NS, 'svg'); svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.style.width = W + 'px'; svg.style.height = H + 'px'; svg.style.display = 'block';
  const line = document.createElementNS(NS, 'path');
  line.setAttribute('fill', 'none'); line.setAttribute('stroke-width', '1.25');
  svg.appendChild(line); row.appendChild(svg); const chart = {line}; redraw(chart, s); return chart;
}
function redraw(chart, [, ys]) {
  let lo = Infinity, hi = -Infinity;
  for (const y of ys) { if (y < lo) lo = y; if (y > hi) hi = y; }
  const span = hi - lo || 1, pad = 2, step = (W - 2 * pad) / (ys.length - 1);
  let d = '';
  for (let i = 0; i < ys.length; i++) {
    const y = pad + (H - 2 * pad) * (1 - (ys[i] - lo) / span);
    d += (i ? 'L' : 'M') + (pad + i * step).toFixed(1) + ' ' + y.toFixed(1);
  }
  chart.line.setAttribute('d', d);
  chart.line.setAttribute('stroke', ys[ys.length - 1] >= ys[0] ? '#1a7f37' : '#cf222e');
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
    cdp.send("LayerTree.enable")
    layers: list[int] = []
    cdp.on("LayerTree.layerTreeDidChange", lambda e: layers.append(len(e.get("layers") or [])))
    start = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    page.evaluate("() => window.otherFrames()")
    end = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    result["other_frame_busy_ms"] = (end["TaskDuration"] - start["TaskDuration"]) * 1000 / 30
    result["layers"] = max(layers, default=0)
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
                ("svg", "", SVG),
                (f"uplot {UPLOT_VERSION}", f"<style>{uplot_css}</style><script>{uplot_js}</script>", UPLOT),
            ):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                script = HARNESS % {"rows": opts.rows, "draw": draw}
                results[name] = run(page, PAGE % (head, script), opts.passes)
                page.close()
        finally:
            browser.close()
    line = json.dumps({"bench": "sparklines", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       "commit": commit(), "rows": opts.rows, "passes": opts.passes, "machine": machine(),
                       "results": results})
    print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"sparklines-{dt.datetime.now(dt.UTC):%Y-%m-%d}.jsonl", "a") as fh:
        fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
