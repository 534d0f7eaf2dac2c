/* Live board: keeps the server-rendered quote table current, draws the selected symbol's chart,
 * the rows' sparklines and the watchlist, and says how fresh all of it is.
 *
 * Wire protocol v1 (docs/PROTOCOL.md; frame shapes in ticker/protocol.py). The server speaks first
 * with `hello`; we answer `sub` on a first connection, or `resume` with the epoch/seq we hold after
 * a reconnect, so the server can send only what we missed. Then `snap` (full rows) and `q` (short
 * rows) keep prices current and `sym` changes the set of rows. `handleMessage` takes each decoded
 * server message, whichever transport (transport.js) brought it.
 *
 * Rendering: messages change the model only; the DOM is written once per animation frame for the
 * rows that changed, the flash is an opacity animation of an overlay (compositor-only), nothing in
 * that path reads layout, and a hidden tab writes nothing until it is shown again.
 * No framework and no build step: these files are served as they are.
 */
'use strict';

import {createChartPanel, createSparklines, SPARK_MINUTES} from './chart.js';
import {decimalsFor, fmtPrice, fmtSigned, fmtVolume} from './format.js';
import {createStatus} from './status.js';
import {createSwitchingTransport} from './fallback.js';
import {createWatchlist} from './watchlist.js';
import {createWirePanel} from './wire.js';

const SYNC_TIMEOUT_MS = 10000;       // open but no snapshot this long: start over
const TICK_MS = 250;                 // the age, countdown, banner and wire panel
const SPARK_EVERY_MS = 1000;         // sparklines: at most one redraw a second
const FLASH_MS = 450;
const FADE_STEP_MS = 150;            // a fade step when no quotes bring a frame sooner
const KEY_SELECTED = 'ticker.selected';

// Indexes into a full row (`snap`) and a short row (`q`), see ticker/protocol.py.
const FULL = {SYM: 0, LAST: 1, PREV: 2, OPEN: 3, HIGH: 4, LOW: 5, VOL: 6, TS: 7};
const SHORT = {SYM: 0, LAST: 1, VOL: 2, TS: 3};

const $ = (id) => document.getElementById(id);
const app = $('app');
const table = $('board');
const tbody = $('board-body');
const scroller = $('board-scroll');
const rowTemplate = $('row-template');
const emptyWatch = $('board-empty-watchlist');
const wire = {
  bytes: $('wire-bytes'), frames: $('wire-frames'), rate: $('wire-rate'), avg: $('wire-avg'),
  seq: $('wire-seq'), epoch: $('wire-epoch'), node: $('wire-node'),
  poll: $('wire-poll'), pollOne: $('wire-poll-one'), transport: $('wire-transport'),
};

/** Everything a test (or someone in devtools) may want to read. Mutated in place. */
const stats = {
  epoch: app.dataset.epoch || '',
  seq: Number(app.dataset.seq) || 0,
  frames: 0,
  bytes: 0,
  node: '',
  state: 'reconnecting',
  connects: 0,
  transport: '',
  lastFrameAt: 0,   // performance.now() of the last frame of any kind
  lastQuoteAt: 0,   // performance.now() of the last snap/q applied
  subscribed: null, // what this connection asked for: '*' or a list of tickers
  market: {state: 'open', reason: ''},  // the market's state, from hello and sym
  selected: '',
  feedDown: false,
  flushes: 0,       // animation frames that wrote rows
  poll: null,       // {request, response} bytes of one real /api/quotes/ poll
};
window.tickerState = stats;

/** Where we stand on the current connection. */
const link = {
  pendingOp: '',        // the subscription request awaiting its first quotes
  resumable: false,     // we have been subscribed before: send `resume`, not `sub`
  synced: false,        // quotes received on the current connection (or nothing to receive)
  everLive: false,
  openedAt: 0,
};

/** sym -> {tr, cells, text, name, paused, decimals, prev, q, spark, dir} */
const rows = new Map();
/** Short rows for symbols not (yet) on the board: a `q` may overtake the `sym` that adds them. */
const unlisted = new Map();
/** name of every listed symbol (for the watchlist's completion). */
const names = new Map();

const reduceMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

// ---------------------------------------------------------------- the rows

function cellsOf(tr) {
  return {
    last: tr.querySelector('td.last .v'), chg: tr.querySelector('td.chg .v'), pct: tr.querySelector('td.pct .v'),
    chgTd: tr.querySelector('td.chg'), pctTd: tr.querySelector('td.pct'),
    high: tr.querySelector('td.high .v'), low: tr.querySelector('td.low .v'), vol: tr.querySelector('td.vol .v'),
    name: tr.querySelector('.name'), tag: tr.querySelector('.tag'),
    flash: tr.querySelector('.fl'),
  };
}

/** Which rows are on screen (the flash is for them only), told by the browser without a layout read. */
const byHeader = new Map();
const onScreen = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const row = byHeader.get(entry.target);
    if (!row) continue;
    row.onScreen = entry.isIntersecting;
    row.spark.visible = row.onScreen;
  }
}, {root: scroller, rootMargin: '150px 0px'}) : null;

function newRow(tr, sym) {
  const row = {
    tr, sym, cells: cellsOf(tr), text: {}, name: '', paused: false, decimals: 2, prev: NaN, q: null,
    spark: null, dir: 0, sign: 0, shown: true, onScreen: !onScreen, secondaryAt: -Infinity,
  };
  row.spark = sparks.attach(tr.querySelector('svg.spark'), NaN);
  row.spark.visible = row.onScreen;
  tr.tabIndex = -1;
  const header = tr.querySelector('th');
  byHeader.set(header, row);
  onScreen?.observe(header);
  return row;
}

/** Adopt the rows the server rendered, so the page holds state before the socket opens. */
function adoptServerRows() {
  for (const tr of tbody.querySelectorAll('tr[data-symbol]')) {
    const d = tr.dataset;
    const row = newRow(tr, d.symbol);
    row.name = tr.querySelector('.name').textContent;
    row.paused = tr.classList.contains('paused');
    row.prev = Number(d.prev);
    row.spark.prev = row.prev;
    row.q = {
      last: Number(d.last), prev: Number(d.prev), open: Number(d.open),
      high: Number(d.high), low: Number(d.low), volume: Number(d.volume), ts: 0,
    };
    rows.set(d.symbol, row);
    names.set(d.symbol, row.name);
  }
}

/** A new row from the <template>, inserted in ticker order (the server sorts the same way). */
function createRow(sym) {
  const tr = rowTemplate.content.firstElementChild.cloneNode(true);
  tr.dataset.symbol = sym;
  tr.querySelector('.tkr').textContent = sym;
  let before = null;
  for (const other of tbody.children) {
    if (other.dataset.symbol && other.dataset.symbol > sym) { before = other; break; }
  }
  tbody.querySelector('tr.empty')?.remove();
  tbody.insertBefore(tr, before);
  const row = newRow(tr, sym);
  rows.set(sym, row);
  return row;
}

function removeRow(sym) {
  const row = rows.get(sym);
  if (!row) return;
  sparks.detach(row.spark);
  const header = row.tr.querySelector('th');
  byHeader.delete(header);
  onScreen?.unobserve(header);
  row.tr.remove();
  rows.delete(sym);
  dirty.delete(row);
  secondaryBehind.delete(row);
}

/** Write `text` into a cell unless it already shows it (cached: no DOM read). */
function put(row, key, el, text) {
  if (row.text[key] === text) return;
  row.text[key] = text;
  el.textContent = text;
}

function putSign(row, sign) {
  if (row.sign === sign) return;
  row.sign = sign;
  for (const el of [row.cells.chgTd, row.cells.pctTd]) {
    el.classList.toggle('up', sign > 0);
    el.classList.toggle('down', sign < 0);
  }
}

/** Write a row's quote into its cells; only cells whose text changed are touched. The price
 *  columns (last, change, %) follow every frame; high, low and volume at most once a second
 *  (SECONDARY_MS) unless `all`: they move with nearly every tick and nobody reads them that fast. */
function renderRow(row, now, all = false) {
  const {cells, q, decimals} = row;
  const tag = stats.market.state === 'halted' ? 'halted' : row.paused ? 'paused' : '';
  if (row.text.tag !== tag) {
    row.text.tag = tag;
    row.tr.classList.toggle('paused', Boolean(tag));
    cells.tag.textContent = tag || 'paused';
    cells.tag.hidden = !tag;
  }
  if (row.text.name !== row.name) {
    put(row, 'name', cells.name, row.name);
    cells.name.title = row.name;
  }
  if (!q) return;
  const change = q.last - q.prev;
  const pct = q.prev ? (change / q.prev) * 100 : NaN;
  const chgText = fmtSigned(change, decimals);
  put(row, 'last', cells.last, fmtPrice(q.last, decimals));
  put(row, 'chg', cells.chg, chgText);
  put(row, 'pct', cells.pct, Number.isFinite(pct) ? fmtSigned(pct, 2) + '%' : '–');
  if (all || now - row.secondaryAt >= SECONDARY_MS) {
    row.secondaryAt = now;
    secondaryBehind.delete(row);
    put(row, 'high', cells.high, fmtPrice(q.high, decimals));
    put(row, 'low', cells.low, fmtPrice(q.low, decimals));
    put(row, 'vol', cells.vol, fmtVolume(q.volume));
  } else {
    secondaryBehind.add(row);
  }
  // Colour from the rounded text, so a change shown as 0.00 is neutral, not green.
  putSign(row, chgText.startsWith('+') ? 1 : chgText.startsWith('-') ? -1 : 0);
}

/**
 * A brief green/red glow on the last price: the opacity of an overlay that has a compositor layer
 * of its own (`will-change: opacity`), so changing it repaints nothing. It fades in steps, one per
 * frame the board draws anyway (`fadeFlashes`, at the rate of the quotes), not as a Web Animation:
 * in Chromium a running animation, even one on the compositor, brings the main thread a frame at
 * every vsync (60 a second: measured in docs/PERFORMANCE.md), and on a busy board some flash is
 * always running. Rows off screen do not flash: nobody sees them.
 */
const fading = new Map();  // row -> performance.now() of its flash

function flash(row, direction, now) {
  if (reduceMotion.matches || !direction || row.paused || !row.onScreen) return;
  const el = row.cells.flash;
  const cls = direction > 0 ? 'fl up' : 'fl down';
  if (el.className !== cls) el.className = cls;
  el.style.opacity = '1';
  fading.set(row, now);
}

/** The next step of every glow; the last step hides it. */
function fadeFlashes(now) {
  for (const [row, start] of fading) {
    const left = 1 - (now - start) / FLASH_MS;
    if (left <= 0.05) {
      row.cells.flash.style.opacity = '0';
      fading.delete(row);
    } else if (now > start) {
      row.cells.flash.style.opacity = left.toFixed(2);
    }
  }
  // Quotes bring a frame every 100 ms or so; only when they stop does the fade ask for its own.
  clearTimeout(fadeTimer);
  fadeTimer = fading.size ? setTimeout(requestFlush, FADE_STEP_MS) : 0;
}
let fadeTimer = 0;

function stopFlash(row) {
  fading.delete(row);
  row.cells.flash.style.opacity = '0';
}

// ---------------------------------------------------------------- one write per frame

const dirty = new Set();
/** Rows whose high, low or volume cells wait for their once-a-second refresh. */
const secondaryBehind = new Set();
const SECONDARY_MS = 1000;
let frameRequested = false;
let catchingUp = false;   // the first frame after the tab comes back: no flashes for old news
let lastFlushAt = 0;
let statusDue = false;    // the status texts (age, indicator, wire panel) wait for the next frame
let sparksDue = false;    // so do the sparklines, once a second

function markDirty(row, direction) {
  if (direction) row.dir = direction;
  dirty.add(row);
  requestFlush();
}

function requestFlush() {
  if (frameRequested || document.hidden) return;
  frameRequested = true;
  requestAnimationFrame(flush);
}

/**
 * The one DOM write of a frame: the rows that changed, their flashes, and whatever else is due
 * (status, sparklines) in the same frame, so that the clock and the sparklines do not cost
 * frames of their own. Rows off screen are written too (their text stays current for a screen
 * reader), but `content-visibility: auto` spares them style, layout and paint.
 */
function flush(now) {
  frameRequested = false;
  if (document.hidden) return;
  lastFlushAt = now;
  if (dirty.size) stats.flushes += 1;
  for (const row of dirty) {
    renderRow(row, now, catchingUp);
    if (!catchingUp) flash(row, row.dir, now);
    row.dir = 0;
  }
  dirty.clear();
  catchingUp = false;
  fadeFlashes(now);
  if (statusDue) {
    statusDue = false;
    renderStatus(now);
  }
  if (sparksDue) {
    sparksDue = false;
    sparks.drawVisible();
  }
  if (secondaryBehind.size && !pendingTimer) pendingTimer = setTimeout(flushPending, SECONDARY_MS);
}

/** Nothing new arrived, but high, low or volume cells are due: come back for them. */
let pendingTimer = 0;
function flushPending() {
  pendingTimer = 0;
  const now = performance.now();
  for (const row of secondaryBehind) {
    if (now - row.secondaryAt >= SECONDARY_MS) {
      secondaryBehind.delete(row);
      dirty.add(row);
    }
  }
  requestFlush();
}

// ---------------------------------------------------------------- protocol state

/** `hello` and `sym` both carry the market's state: halted, every row says so and the banner
 *  gives the operator's reason. */
function applyMarket(market) {
  const state = market && market.state === 'halted' ? 'halted' : 'open';
  if (state === stats.market.state && (market?.reason || '') === stats.market.reason) return;
  stats.market = {state, reason: (market && market.reason) || ''};
  for (const row of rows.values()) {
    if (state === 'halted') stopFlash(row);
    markDirty(row, 0);
  }
  requestFlush();
}

/** `hello` and `sym` both carry the whole symbol list: add, update and drop rows to match. */
function applySymbols(list) {
  const listed = new Set();
  names.clear();
  for (const s of list) {
    listed.add(s.s);
    names.set(s.s, s.name || '');
    const row = rows.get(s.s) || createRow(s.s);
    row.name = s.name || '';
    const paused = Boolean(s.paused);
    if (paused && !row.paused) stopFlash(row);  // a paused row must not look like it just traded
    row.paused = paused;
    row.decimals = decimalsFor(s.tick);
    // An admin may change the previous close; quote frames do not repeat it.
    if (Number.isFinite(s.prev)) {
      row.prev = s.prev;
      row.spark.prev = s.prev;
      if (row.q) row.q.prev = s.prev;
    }
    const early = unlisted.get(s.s);
    if (early) applyShortRow(row, early);
    markDirty(row, 0);
  }
  for (const sym of [...rows.keys()]) {
    if (!listed.has(sym)) removeRow(sym);
  }
  unlisted.clear();
  watchlist.setSymbols(list);
  applyFilter();
  if (!stats.selected || !rows.has(stats.selected)) selectDefault();
}

function applySnap(msg) {
  // A server that resynced onto a new feed run says so here (no new `hello` comes).
  if (msg.epoch) stats.epoch = msg.epoch;
  for (const r of msg.q) {
    const row = rows.get(r[FULL.SYM]);
    if (!row) continue;  // not listed (any more): the next `sym` decides
    row.q = {
      last: r[FULL.LAST], prev: r[FULL.PREV], open: r[FULL.OPEN], high: r[FULL.HIGH],
      low: r[FULL.LOW], volume: r[FULL.VOL], ts: r[FULL.TS],
    };
    if (r[FULL.TS]) sparks.push(row.spark, r[FULL.LAST], r[FULL.TS]);
    markDirty(row, 0);  // a snap is a resync, not a tick: no flash
  }
  gotQuotes(msg.seq);
}

/** Fold a short row into a row's quote; returns the direction of the last price. */
function applyShortRow(row, r) {
  const last = r[SHORT.LAST];
  let q = row.q;
  if (!q) {
    // A symbol added since our snap: it opened at its previous close (see ticker/quotes.py).
    const prev = Number.isFinite(row.prev) ? row.prev : last;
    q = row.q = {last: prev, prev, open: prev, high: prev, low: prev, volume: 0, ts: 0};
  }
  const direction = Math.sign(last - q.last);
  q.last = last;
  q.high = Math.max(q.high, last);
  q.low = Math.min(q.low, last);
  q.volume = r[SHORT.VOL];
  q.ts = r[SHORT.TS];
  sparks.push(row.spark, last, q.ts);
  chart.quote(row.sym, last, q.volume, q.ts);
  return direction;
}

function applyQuotes(msg) {
  for (const r of msg.q) {
    const row = rows.get(r[SHORT.SYM]);
    if (!row) {
      unlisted.set(r[SHORT.SYM], r);
      continue;
    }
    markDirty(row, applyShortRow(row, r));
  }
  gotQuotes(msg.seq);
}

function gotQuotes(seq) {
  if (Number.isInteger(seq)) stats.seq = seq;
  stats.lastQuoteAt = performance.now();
  link.synced = true;
  link.pendingOp = '';
}

/** A new epoch means the feed restarted: what we hold belongs to another run. */
function forgetState() {
  stats.seq = 0;
  link.synced = false;
}

/** The chart draws in its own animation frame: handing it the new candle now (not from ours) lets
 *  that be the same frame as the rows', instead of the one after. */
function chartNow() {
  if (!document.hidden) chart.flush();
}

/**
 * One decoded server message, from whichever transport brought it; `wireBytes` is what it cost
 * on the wire (the wire panel). `null` is a frame that could not be decoded: counted, ignored.
 */
function handleMessage(msg, wireBytes) {
  stats.frames += 1;
  stats.bytes += wireBytes;
  stats.lastFrameAt = performance.now();
  if (!msg) return;
  switch (msg.t) {
    case 'hello': onHello(msg); break;
    case 'snap': applySnap(msg); chartNow(); break;
    case 'q': applyQuotes(msg); chartNow(); break;
    case 'sym': applySymbols(msg.symbols || []); applyMarket(msg.market); break;
    case 'err': onError(msg); break;
    default: break;  // `pong`, and kinds newer servers may send: nothing to do
  }
}

// ---------------------------------------------------------------- subscription

/** What the board shows, so what this connection should receive: '*' or a list. */
function wanted() {
  if (!watchState.only) return '*';
  return watchState.symbols.filter((s) => rows.has(s));
}

function subscribeFresh(want) {
  stats.subscribed = want;
  if (want === '*' || want.length) {
    link.pendingOp = 'sub';
    transport.send({op: 'sub', symbols: want});
  } else {
    gotNothingToReceive();
  }
}

/** An empty watchlist shown alone: no subscription, so no snapshot will come; we are in sync. */
function gotNothingToReceive() {
  link.synced = true;
  link.pendingOp = '';
}

let ackEveryMs = 0;
let lastAck = {at: 0, seq: -1};

function onHello(msg) {
  ackEveryMs = (msg.limits && msg.limits.ack_ms) || 0;
  lastAck = {at: 0, seq: -1};
  if (stats.epoch && msg.epoch !== stats.epoch) forgetState();
  const canResume = link.resumable && stats.epoch === msg.epoch && stats.seq > 0;
  stats.epoch = msg.epoch;
  stats.node = msg.node || '';
  applySymbols(msg.symbols || []);
  applyMarket(msg.market);
  const want = wanted();
  if (canResume && (want === '*' || want.length)) {
    stats.subscribed = want;
    link.pendingOp = 'resume';
    transport.send({op: 'resume', epoch: stats.epoch, seq: stats.seq, symbols: want});
  } else {
    subscribeFresh(want);
  }
  link.resumable = true;
  measurePoll();
}

/** The watchlist or the "only" switch changed: move the subscription to match, in place. */
function followSubscription() {
  const want = wanted();
  const had = stats.subscribed;
  if (!transport.status().open || had === null || !link.resumable) return;  // the next hello decides
  if (want === '*') {
    if (had !== '*') subscribeFresh('*');
  } else if (had === '*') {
    transport.send({op: 'unsub', symbols: '*'});
    subscribeFresh(want);
  } else {
    const add = want.filter((s) => !had.includes(s));
    const drop = had.filter((s) => !want.includes(s));
    if (drop.length) transport.send({op: 'unsub', symbols: drop});
    stats.subscribed = want;
    if (add.length) {
      link.pendingOp = 'sub';
      transport.send({op: 'sub', symbols: add});
    }
  }
  measurePoll();
}

/** Errors are recoverable (the server keeps the connection): show them, and if our `resume`
 *  was refused, fall back to a plain subscription and its snapshot. */
function onError(msg) {
  showNotice(`${msg.code}: ${msg.msg}`, msg);
  if (!link.synced && link.pendingOp === 'resume') subscribeFresh(stats.subscribed ?? wanted());
}

/** Tell the server the last seq we applied, every `limits.ack_ms` of its `hello` (0 or absent:
 *  it does not want acks) when it moved (docs/PROTOCOL.md, "Slow clients"). On a timer, not per
 *  frame, so the ack that shows we caught up is sent even when no frame follows it. */
function acknowledge(now) {
  if (!ackEveryMs || stats.seq === lastAck.seq || now - lastAck.at < ackEveryMs) return;
  if (transport.send({op: 'ack', seq: stats.seq})) lastAck = {at: now, seq: stats.seq};
}

// ---------------------------------------------------------------- the transport

const transport = createSwitchingTransport({
  opened() {
    link.synced = false;
    link.openedAt = performance.now();
    stats.lastFrameAt = link.openedAt;
    stats.connects = transport.status().connects;
  },
  message: handleMessage,
  closed() {
    link.synced = false;
    stats.subscribed = null;
    refreshState();
  },
  changed() {
    stats.transport = transport.name;
    refreshState();
  },
}, () => ({symbols: wanted(), epoch: stats.epoch, seq: stats.seq, resumable: link.resumable && stats.seq > 0}),
{retryWsMs: Number(app.dataset.wsRetryMs) || undefined});
stats.transport = transport.name;

// ---------------------------------------------------------------- status

const status = createStatus({
  table, conn: $('conn'), connLabel: $('conn-label'), announce: $('conn-announce'), banner: $('banner'),
  age: $('age'), notice: $('notice'), breadth: {up: $('breadth-up'), down: $('breadth-down'), count: $('breadth-count')},
}, {stats, link, rows, transport});
const {refreshState, renderBanner, renderAge, showNotice, renderBreadth} = status;

// ---------------------------------------------------------------- the wire panel

const wirePanel = createWirePanel(wire, stats);
const measurePoll = () => wirePanel.measurePoll();
const renderWire = (now) => wirePanel.render(now);

// ---------------------------------------------------------------- selection and the chart

const chart = createChartPanel($('chart'), $('chart-title'), $('chart-status'));
const sparks = createSparklines();
const chartWatch = $('chart-watch');

function focusableRow(row) {
  for (const other of rows.values()) if (other.tr.tabIndex === 0 && other !== row) other.tr.tabIndex = -1;
  row.tr.tabIndex = 0;
}

function select(sym, {focus = false} = {}) {
  const row = rows.get(sym);
  if (!row) return;
  const before = rows.get(stats.selected);
  if (before) {
    before.tr.classList.remove('selected');
    before.tr.removeAttribute('aria-current');
  }
  stats.selected = sym;
  row.tr.classList.add('selected');
  row.tr.setAttribute('aria-current', 'true');
  focusableRow(row);
  if (focus) row.tr.focus();
  try { localStorage.setItem(KEY_SELECTED, sym); } catch { /* private mode */ }
  renderWatchButton();
  if (chart.symbol !== sym) chart.select(sym, row.name, row.q);
}

function selectDefault() {
  let stored = '';
  try { stored = localStorage.getItem(KEY_SELECTED) || ''; } catch { /* private mode */ }
  const visible = [...rows.values()].filter((r) => r.shown);
  const pick = [stored, ...watchState.symbols].find((s) => rows.get(s)?.shown) || visible[0]?.sym;
  if (pick) select(pick);
}

function renderWatchButton() {
  const sym = stats.selected;
  const on = watchlist.has(sym);
  chartWatch.hidden = !sym;
  chartWatch.setAttribute('aria-pressed', on ? 'true' : 'false');
  chartWatch.textContent = on ? '★ Watching' : '☆ Watch';
  chartWatch.title = on ? `${sym} is on the watchlist` : `Add ${sym} to the watchlist`;
}

chartWatch.addEventListener('click', () => {
  if (stats.selected && !watchlist.has(stats.selected)) watchlist.add(stats.selected);
});

tbody.addEventListener('click', (event) => {
  const tr = event.target.closest('tr[data-symbol]');
  if (tr) select(tr.dataset.symbol, {focus: true});
});

/** Rows are one tab stop (the selected row); arrows move, Enter or Space select. */
tbody.addEventListener('keydown', (event) => {
  const tr = event.target.closest('tr[data-symbol]');
  if (!tr || event.target !== tr) return;
  const shown = [...tbody.children].filter((el) => el.dataset.symbol && !el.hidden);
  const i = shown.indexOf(tr);
  let next = null;
  switch (event.key) {
    case 'ArrowDown': next = shown[i + 1]; break;
    case 'ArrowUp': next = shown[i - 1]; break;
    case 'Home': next = shown[0]; break;
    case 'End': next = shown[shown.length - 1]; break;
    case 'PageDown': next = shown[Math.min(shown.length - 1, i + 10)]; break;
    case 'PageUp': next = shown[Math.max(0, i - 10)]; break;
    case 'Enter': case ' ': select(tr.dataset.symbol); break;
    default: return;
  }
  event.preventDefault();
  if (next) {
    focusableRow(rows.get(next.dataset.symbol));
    next.focus();
  }
});

// ---------------------------------------------------------------- the watchlist

const watchlist = createWatchlist({
  form: $('wl-form'), input: $('wl-input'), options: $('wl-options'), list: $('wl-list'),
  only: $('wl-only'), where: $('wl-where'), status: $('wl-status'),
}, {
  onChange: () => {
    applyFilter();
    followSubscription();
    renderWatchButton();
  },
  onSelect: (sym) => select(sym, {focus: false}),
  names: () => names,
});
const watchState = watchlist.state;

/** Watchlist alone: only its rows, in its order; otherwise every row in ticker order. */
function applyFilter() {
  const only = watchState.only;
  const order = only ? watchState.symbols.filter((s) => rows.has(s)) : [...rows.keys()].sort();
  const keep = new Set(order);
  for (const row of rows.values()) {
    const shown = !only || keep.has(row.sym);
    row.shown = shown;
    if (row.tr.hidden === shown) row.tr.hidden = !shown;
  }
  // Reorder only when the order differs (a watchlist edit, not the hot path).
  const current = [...tbody.children].filter((el) => el.dataset.symbol && !el.hidden).map((el) => el.dataset.symbol);
  if (current.join() !== order.join()) {
    const frag = document.createDocumentFragment();
    for (const sym of order) frag.append(rows.get(sym).tr);
    tbody.insertBefore(frag, tbody.firstChild);
  }
  emptyWatch.hidden = !(only && order.length === 0);
  table.dataset.view = only ? 'watchlist' : 'all';
  if (stats.selected && !rows.get(stats.selected)?.shown) selectDefault();
  renderBreadth();
}

// ---------------------------------------------------------------- sparklines at load

async function loadSparklines() {
  try {
    const res = await fetch(`/api/closes/?minutes=${SPARK_MINUTES}`, {cache: 'no-store'});
    if (!res.ok) return;
    const {closes} = await res.json();
    for (const [sym, points] of Object.entries(closes)) {
      const row = rows.get(sym);
      if (row) sparks.seed(row.spark, points);
    }
  } catch (err) {
    console.info('ticker: sparklines start empty', err);
  }
}

// ---------------------------------------------------------------- timers and start

/** The status texts are written in the next animation frame, with the rows: one frame per
 *  update, not one more for the clock. */
function tick() {
  const now = performance.now();
  acknowledge(now);
  if (transport.status().open && !link.synced && now - link.openedAt > SYNC_TIMEOUT_MS) {
    transport.restart('no snapshot');
  }
  if (document.hidden) return;  // a hidden tab does no DOM work; it catches up when shown
  statusDue = true;
  if (now - lastFlushAt > TICK_MS) requestFlush();  // else the next quotes' frame writes it
}

function renderStatus(now) {
  refreshState();
  renderAge(now);
  renderBanner(now);
  renderWire(now);
  renderBreadth();
}

function drawSparks() {
  sparksDue = true;
  requestFlush();
}

function onVisible() {
  if (document.visibilityState !== 'visible') return;
  catchingUp = true;
  transport.reconnectNow();
  chartNow();
  tick();
  drawSparks();
}

function onThemeChange() {
  chart.applyTheme();
  sparks.applyTheme();
  drawSparks();
}

adoptServerRows();
for (const row of rows.values()) markDirty(row, 0);  // server text -> the same formats as live updates
applyFilter();
selectDefault();
window.addEventListener('online', () => transport.reconnectNow());
window.addEventListener('offline', refreshState);
document.addEventListener('visibilitychange', onVisible);
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', onThemeChange);
setInterval(tick, TICK_MS);
setInterval(drawSparks, SPARK_EVERY_MS);
loadSparklines().then(drawSparks);
watchlist.loadRemote(app.dataset.user || '');
transport.start();
