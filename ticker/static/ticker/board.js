/* Live board: keeps the server-rendered quote table current, draws the selected symbol's chart,
 * the rows' sparklines and the watchlist, and says how fresh all of it is.
 *
 * This module puts the pieces together and runs the clock: the session (session.js: the quote
 * stream, its messages and counters) feeds the rows (rows.js), which are written once per
 * animation frame (frames.js) with their flashes (flash.js); the selection (selection.js), the
 * watchlist (watchlist.js), the status (status.js) and the wire panel (wire.js) read what they
 * show. Messages change the model only; nothing in the frame's path reads layout.
 * No framework and no build step: these files are served as they are.
 */
'use strict';

import {createChartPanel, createSparklines, SPARK_MINUTES} from './chart.js';
import {createFlashes} from './flash.js';
import {createFrames} from './frames.js';
import {createRows} from './rows.js';
import {createSelection} from './selection.js';
import {createSession} from './session.js';
import {createStatus} from './status.js';
import {createWatchlist} from './watchlist.js';
import {createWirePanel} from './wire.js';

const TICK_MS = 250;                 // the age, countdown, banner and wire panel
const SPARK_EVERY_MS = 1000;         // sparklines: at most one redraw a second

const $ = (id) => document.getElementById(id);
const app = $('app');
const table = $('board');
const tbody = $('board-body');
const emptyWatch = $('board-empty-watchlist');

const chart = createChartPanel($('chart'), $('chart-title'), $('chart-status'));
const sparks = createSparklines();

let statusDue = false;    // the status texts (age, indicator, wire panel) wait for the next frame
let sparksDue = false;    // so do the sparklines, once a second

const frames = createFrames({
  render: (row, now, all) => rows.render(row, now, all),
  flash: (row, direction, now) => flashes.flash(row, direction, now),
  fade: (now) => flashes.fade(now),
  after(now) {
    if (statusDue) {
      statusDue = false;
      renderStatus(now);
    }
    if (sparksDue) {
      sparksDue = false;
      sparks.drawVisible();
    }
  },
});
const flashes = createFlashes(frames.request);

const session = createSession({
  epoch: app.dataset.epoch, seq: Number(app.dataset.seq), retryWsMs: Number(app.dataset.wsRetryMs) || undefined,
}, {
  wanted,
  symbols: applySymbols,
  market: applyMarket,
  source: (text) => { $('source').textContent = text; },
  snap(list) { rows.applyFull(list); chartNow(); },
  quotes(list) { rows.applyShort(list); chartNow(); },
  stale: (since) => rows.setStale(since),
  notice: (msg) => status.showNotice(msg),
  changed: () => status.refreshState(),
  subscribed: () => wirePanel.measurePoll(),
});
const {stats} = session;

const rows = createRows({tbody, scroller: $('board-scroll'), rowTemplate: $('row-template')},
  {sparks, chart, market: () => stats.market}, {
    dirty: frames.markDirty,
    paused: (row) => flashes.stop(row),
    removed: (row) => frames.forget(row),
  });
const byRow = rows.rows;

const status = createStatus({
  table, conn: $('conn'), connLabel: $('conn-label'), announce: $('conn-announce'), banner: $('banner'),
  age: $('age'), notice: $('notice'), breadth: {up: $('breadth-up'), down: $('breadth-down'), count: $('breadth-count')},
}, {session, rows: byRow});

const wirePanel = createWirePanel({
  bytes: $('wire-bytes'), frames: $('wire-frames'), rate: $('wire-rate'), avg: $('wire-avg'),
  seq: $('wire-seq'), epoch: $('wire-epoch'), node: $('wire-node'),
  poll: $('wire-poll'), pollOne: $('wire-poll-one'), transport: $('wire-transport'),
}, stats);

const watchlist = createWatchlist({
  form: $('wl-form'), input: $('wl-input'), options: $('wl-options'), list: $('wl-list'),
  only: $('wl-only'), where: $('wl-where'), status: $('wl-status'),
}, {
  onChange: () => {
    applyFilter();
    session.follow();
    selection.renderWatchButton();
  },
  onSelect: (sym) => selection.select(sym, {focus: false}),
  names: () => rows.names,
});
const watchState = watchlist.state;

const selection = createSelection({tbody, chartWatch: $('chart-watch')}, {rows: byRow, chart, watchlist});

/** Everything a test (or someone in devtools) may want to read; each figure read from its owner. */
window.tickerState = Object.freeze(Object.defineProperties({}, {
  ...Object.fromEntries(Object.keys(stats).map((key) => [key, {get: () => stats[key], enumerable: true}])),
  state: {get: () => status.state, enumerable: true},
  feedDown: {get: () => status.feedDown, enumerable: true},
  selected: {get: () => selection.selected, enumerable: true},
  flushes: {get: () => frames.flushes, enumerable: true},
  poll: {get: () => wirePanel.poll, enumerable: true},
}));

// ---------------------------------------------------------------- what the messages change

/** What the board shows, so what this connection should receive: '*' or a list. */
function wanted() {
  if (!watchState.only) return '*';
  return watchState.symbols.filter((s) => byRow.has(s));
}

/** `hello` and `sym` both carry the whole symbol list. */
function applySymbols(list) {
  rows.setSymbols(list);
  watchlist.setSymbols(list);
  applyFilter();
  if (!selection.selected || !byRow.has(selection.selected)) selection.selectDefault();
}

/** The market halted or reopened: halted, every row says so (and the banner gives the reason). */
function applyMarket(market) {
  for (const row of byRow.values()) {
    if (market.state === 'halted') flashes.stop(row);
    frames.markDirty(row, 0);
  }
  frames.request();
}

/** The chart draws in its own animation frame: handing it the new candle now (not from ours) lets
 *  that be the same frame as the rows', instead of the one after. */
function chartNow() {
  if (!document.hidden) chart.flush();
}

/** Watchlist alone: only its rows, in its order; otherwise every row in ticker order. */
function applyFilter() {
  const only = watchState.only;
  const order = rows.show(only, watchState.symbols);
  emptyWatch.hidden = !(only && order.length === 0);
  table.dataset.view = only ? 'watchlist' : 'all';
  if (selection.selected && !byRow.get(selection.selected)?.shown) selection.selectDefault();
  status.renderBreadth();
}

// ---------------------------------------------------------------- sparklines at load

async function loadSparklines() {
  try {
    const res = await fetch(`/api/closes/?minutes=${SPARK_MINUTES}`, {cache: 'no-store'});
    if (!res.ok) return;
    const {closes} = await res.json();
    for (const [sym, points] of Object.entries(closes)) {
      const row = byRow.get(sym);
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
  session.tick(now);
  if (document.hidden) return;  // a hidden tab does no DOM work; it catches up when shown
  statusDue = true;
  if (now - frames.lastFlushAt > TICK_MS) frames.request();  // else the next quotes' frame writes it
}

function renderStatus(now) {
  status.refreshState();
  status.renderAge(now);
  status.renderBanner(now);
  wirePanel.render(now);
  status.renderBreadth();
}

function drawSparks() {
  sparksDue = true;
  frames.request();
}

function onVisible() {
  if (document.visibilityState !== 'visible') return;
  frames.catchUp();
  session.reconnectNow();
  chartNow();
  tick();
  drawSparks();
}

function onThemeChange() {
  chart.applyTheme();
  sparks.applyTheme();
  drawSparks();
}

rows.adoptServerRows();
for (const row of byRow.values()) frames.markDirty(row, 0);  // server text -> the same formats as live updates
applyFilter();
selection.selectDefault();
window.addEventListener('online', () => session.reconnectNow());
window.addEventListener('offline', () => status.refreshState());
document.addEventListener('visibilitychange', onVisible);
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', onThemeChange);
setInterval(tick, TICK_MS);
setInterval(drawSparks, SPARK_EVERY_MS);
loadSparklines().then(drawSparks);
watchlist.loadRemote(app.dataset.user || '');
session.start();
