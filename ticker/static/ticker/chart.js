/* The chart panel (TradingView lightweight-charts, vendored: vendor/README.md) and the rows'
 * sparklines (a small canvas routine; docs/PERFORMANCE.md says why not uPlot).
 *
 * Both keep their own model and draw only when asked: the board calls `flush()` from its
 * animation frame and `drawSparks()` at most once a second, never while the tab is hidden.
 */
'use strict';

const MINUTE_MS = 60000;
const CANDLES = 240;                 // four hours of one-minute candles in the chart
export const SPARK_MINUTES = 30;
const SPARK_W = 72;                  // CSS pixels; the CSS gives the canvas the same size
const SPARK_H = 20;
const SPARK_SAMPLE_MS = 5000;        // live points: one every 5 s at most (360 in 30 minutes)
const SPARK_MIN_SPAN_MS = 5 * MINUTE_MS;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// ---------------------------------------------------------------- the chart panel

/**
 * One-minute candles of the selected symbol with its volume below and a last-price line,
 * from `/api/candles/<SYM>/`, extended live by the quotes the board receives.
 */
export function createChartPanel(host, titleEl, statusEl) {
  const LWC = window.LightweightCharts;
  let chart = null;
  let candles = null;
  let volumes = null;
  let symbol = '';
  let bars = [];            // {time, open, high, low, close}, time in UTC seconds
  let vols = [];            // {time, value, color}
  let pushed = 0;           // bars[0 .. pushed-1] are in the chart; bars[pushed-1] may have changed since
  let dirty = false;
  let baseVolume = null;    // the day's cumulative volume when the last bar was touched
  let loading = 0;          // id of the fetch in flight; a later select() wins
  let pal = null;           // colours read from the CSS once (and again on a theme change), never per frame

  function colors() {
    return {
      text: cssVar('--muted'), grid: cssVar('--line'), bg: cssVar('--panel'),
      up: cssVar('--up'), down: cssVar('--down'), volUp: cssVar('--vol-up'), volDown: cssVar('--vol-down'),
    };
  }

  function build() {
    if (!LWC) {
      statusEl.textContent = 'Chart library not loaded.';
      return false;
    }
    const c = pal = colors();
    chart = LWC.createChart(host, {
      autoSize: true,
      layout: {background: {type: LWC.ColorType.Solid, color: c.bg}, textColor: c.text, fontSize: 11,
        attributionLogo: true},
      grid: {vertLines: {color: c.grid}, horzLines: {color: c.grid}},
      rightPriceScale: {borderColor: c.grid, scaleMargins: {top: 0.1, bottom: 0.28}},
      timeScale: {borderColor: c.grid, timeVisible: true, secondsVisible: false, rightOffset: 3},
      crosshair: {mode: LWC.CrosshairMode.Normal},
    });
    candles = chart.addSeries(LWC.CandlestickSeries, {
      upColor: c.up, downColor: c.down, borderVisible: false, wickUpColor: c.up, wickDownColor: c.down,
      priceLineVisible: true, lastValueVisible: true, priceLineSource: LWC.PriceLineSource.LastBar,
    });
    volumes = chart.addSeries(LWC.HistogramSeries, {
      priceScaleId: 'vol', priceFormat: {type: 'volume'}, lastValueVisible: false, priceLineVisible: false,
    });
    chart.priceScale('vol').applyOptions({scaleMargins: {top: 0.78, bottom: 0}});
    return true;
  }

  function applyTheme() {
    if (!chart) return;
    const c = pal = colors();
    chart.applyOptions({
      layout: {background: {type: LWC.ColorType.Solid, color: c.bg}, textColor: c.text},
      grid: {vertLines: {color: c.grid}, horzLines: {color: c.grid}},
      rightPriceScale: {borderColor: c.grid}, timeScale: {borderColor: c.grid},
    });
    candles.applyOptions({upColor: c.up, downColor: c.down, wickUpColor: c.up, wickDownColor: c.down});
    for (const v of vols) v.color = v.up ? c.volUp : c.volDown;
    volumes.setData(vols.slice(0, pushed));
  }

  /** Show `sym`'s chart: its stored candles first, then the live quotes fold in. */
  async function select(sym, name, quote) {
    if (!chart && !build()) return;
    symbol = sym;
    titleEl.textContent = name ? `${sym} · ${name}` : sym;
    statusEl.textContent = 'loading candles…';
    bars = [];
    vols = [];
    pushed = 0;
    dirty = false;
    baseVolume = quote ? quote.volume : null;
    candles.setData([]);
    volumes.setData([]);
    const id = ++loading;
    let rows = [];
    try {
      const res = await fetch(`/api/candles/${encodeURIComponent(sym)}/?limit=${CANDLES}`, {cache: 'no-store'});
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      rows = (await res.json()).candles;
    } catch (err) {
      if (id === loading) statusEl.textContent = `candles unavailable (${err.message}); live only`;
    }
    if (id !== loading) return;  // another symbol was selected meanwhile
    const c = pal;
    // Quotes that arrived while we fetched are already in `bars`: stored candles go before them.
    const live = bars;
    bars = [];
    vols = [];
    for (const [startMs, open, high, low, close, volume] of rows) {
      const up = close >= open;
      bars.push({time: startMs / 1000, open, high, low, close});
      vols.push({time: startMs / 1000, value: volume, color: up ? c.volUp : c.volDown, up});
    }
    for (const bar of live) {
      const last = bars[bars.length - 1];
      if (last && last.time === bar.time) {
        last.high = Math.max(last.high, bar.high);
        last.low = Math.min(last.low, bar.low);
        last.close = bar.close;
      } else if (!last || bar.time > last.time) {
        bars.push(bar);
        vols.push({time: bar.time, value: 0, color: c.volUp, up: true});
      }
    }
    candles.setData(bars);
    volumes.setData(vols);
    pushed = bars.length;
    chart.timeScale().scrollToRealTime();
    if (!statusEl.textContent.startsWith('candles unavailable')) {
      statusEl.textContent = rows.length ? `${rows.length} one-minute candles, live` : 'no candles stored yet; live';
    }
  }

  /** Fold one published price of `sym` in (cheap: model only; `flush()` draws). */
  function quote(sym, price, cumVolume, tsMs) {
    if (sym !== symbol || !chart) return;
    const time = Math.floor(tsMs / MINUTE_MS) * 60;
    const traded = baseVolume === null ? 0 : Math.max(0, cumVolume - baseVolume);
    baseVolume = cumVolume;
    const last = bars[bars.length - 1];
    if (last && last.time === time) {
      last.high = Math.max(last.high, price);
      last.low = Math.min(last.low, price);
      last.close = price;
      const v = vols[vols.length - 1];
      v.value += traded;
      v.up = last.close >= last.open;
    } else if (!last || time > last.time) {
      bars.push({time, open: price, high: price, low: price, close: price});
      vols.push({time, value: traded, up: true});
    } else {
      return;  // older than the last bar: a late frame
    }
    dirty = true;
  }

  /** Draw what changed since the last flush: the last bar again, and any new ones. */
  function flush() {
    if (!dirty || !chart) return;
    dirty = false;
    const up = pal.volUp;
    const down = pal.volDown;
    for (let i = Math.max(0, pushed - 1); i < bars.length; i++) {
      candles.update(bars[i]);
      vols[i].color = vols[i].up ? up : down;
      volumes.update(vols[i]);
    }
    pushed = bars.length;
  }

  window.tickerChart = {
    get symbol() { return symbol; },
    bars: () => (candles ? candles.data().length : 0),
    last: () => (candles ? candles.data().at(-1) || null : null),
  };

  return {select, quote, flush, applyTheme, get symbol() { return symbol; }};
}

// ---------------------------------------------------------------- sparklines

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * One small SVG per row: the last 30 minutes, from the one-minute closes stored at load and the
 * live prices since (time on the x axis, the previous close as a faint baseline). Only rows on
 * screen are drawn (the board's IntersectionObserver says which, without reading layout).
 *
 * SVG, not a canvas: drawing is as cheap either way (benchmarks/sparklines.py), but every canvas
 * on the page is a composited layer of its own, and 30 of them cost the compositor's layerization
 * on every frame of the board, sparkline or not (docs/PERFORMANCE.md, "Sparklines").
 */
export function createSparklines() {
  const byHost = new Map();

  /** A row's spark state for its <svg> (its size is fixed in CSS and here, never measured). */
  function attach(svg, prevClose) {
    svg.setAttribute('viewBox', `0 0 ${SPARK_W} ${SPARK_H}`);
    const base = document.createElementNS(SVG_NS, 'path');
    base.setAttribute('class', 'base');
    const line = document.createElementNS(SVG_NS, 'path');
    line.setAttribute('class', 'line');
    const dot = document.createElementNS(SVG_NS, 'circle');
    dot.setAttribute('r', '1.6');
    svg.replaceChildren(base, line, dot);
    // `visible` is kept by the board, which watches its rows (one observer for both).
    const spark = {svg, base, line, dot, t: [], v: [], prev: prevClose, dirty: true, visible: true, dir: ''};
    byHost.set(svg, spark);
    return spark;
  }

  function detach(spark) {
    byHost.delete(spark.svg);
  }

  /** Stored closes `[[start_ms, close], …]`, oldest first, each placed at its minute's end; live
   *  points already held stay after them. */
  function seed(spark, closes) {
    const t = [];
    const v = [];
    const now = Date.now();
    for (const [start, close] of closes) { t.push(Math.min(start + MINUTE_MS, now)); v.push(close); }
    const lastStored = t.length ? t[t.length - 1] : -Infinity;
    for (let i = 0; i < spark.t.length; i++) {
      if (spark.t[i] > lastStored) { t.push(spark.t[i]); v.push(spark.v[i]); }
    }
    spark.t = t;
    spark.v = v;
    trim(spark);
    spark.dirty = true;
  }

  function trim(spark) {
    const newest = spark.t[spark.t.length - 1];
    let drop = 0;
    while (drop < spark.t.length && spark.t[drop] < newest - SPARK_MINUTES * MINUTE_MS) drop++;
    if (drop) { spark.t.splice(0, drop); spark.v.splice(0, drop); }
  }

  /** A live price: a new point every SPARK_SAMPLE_MS at most, else the newest point moves. */
  function push(spark, price, tsMs) {
    const n = spark.t.length;
    if (n && tsMs < spark.t[n - 1]) return;  // a late frame
    if (n > 1 && tsMs - spark.t[n - 2] < SPARK_SAMPLE_MS) {
      spark.t[n - 1] = tsMs;
      spark.v[n - 1] = price;
    } else {
      spark.t.push(tsMs);
      spark.v.push(price);
      trim(spark);
    }
    spark.dirty = true;
  }

  function draw(spark) {
    const {t, v} = spark;
    if (!v.length) return;
    let lo = Infinity;
    let hi = -Infinity;
    for (const y of v) { if (y < lo) lo = y; if (y > hi) hi = y; }
    const prev = spark.prev;
    const showPrev = Number.isFinite(prev) && prev >= lo - (hi - lo) && prev <= hi + (hi - lo);
    if (showPrev) { lo = Math.min(lo, prev); hi = Math.max(hi, prev); }
    const span = hi - lo || Math.abs(hi) * 0.001 || 1;
    const pad = 2;
    const y = (value) => (pad + (SPARK_H - 2 * pad) * (1 - (value - lo) / span)).toFixed(1);
    // Time runs left to right over what we hold, up to 30 minutes (at least SPARK_MIN_SPAN_MS, so
    // that the first seconds do not look like a trend).
    const t1 = t[t.length - 1];
    const t0 = Math.min(t[0], t1 - SPARK_MIN_SPAN_MS);
    const x = (time) => (pad + (SPARK_W - 2 * pad) * ((time - t0) / (t1 - t0))).toFixed(1);
    let d = '';
    for (let i = 0; i < v.length; i++) d += `${i ? 'L' : 'M'}${x(t[i])} ${y(v[i])}`;
    spark.line.setAttribute('d', d);
    spark.base.setAttribute('d', showPrev ? `M0 ${y(prev)}H${SPARK_W}` : '');
    spark.dot.setAttribute('cx', x(t1));
    spark.dot.setAttribute('cy', y(v[v.length - 1]));
    const dir = Number.isFinite(prev) && v[v.length - 1] < prev ? 'down' : 'up';
    if (dir !== spark.dir) {
      spark.dir = dir;
      spark.svg.setAttribute('class', `spark ${dir}`);
    }
  }

  /** Redraw the changed sparklines on screen (the board calls this at most once a second). */
  function drawVisible() {
    let drawn = 0;
    for (const spark of byHost.values()) {
      if (spark.dirty && spark.visible) {
        draw(spark);
        spark.dirty = false;
        drawn++;
      }
    }
    return drawn;
  }

  function applyTheme() {
    // Colours come from the CSS (classes `up` / `down`): nothing to redraw.
  }

  return {attach, detach, seed, push, drawVisible, applyTheme};
}
