/* The board's rows: each listed symbol's quote, and the table row that shows it. Messages change
 * the quotes (`setSymbols`, `applyFull`, `applyShort`) and which are stale (`setStale`: the
 * server's word, by its clock); `render` writes one row's cells, touching
 * only those whose text changed and reading no layout; `show` hides and orders rows for the
 * watchlist view. When to render is frames.js's business: every change is reported through
 * `hooks.dirty(row, direction)`. */
'use strict';

import {decimalsFor, fmtPrice, fmtSigned, fmtVolume} from './format.js';

// Indexes into a full row (`snap`) and a short row (`q`), see ticker/protocol.py.
const FULL = {SYM: 0, LAST: 1, PREV: 2, OPEN: 3, HIGH: 4, LOW: 5, VOL: 6, TS: 7};
const SHORT = {SYM: 0, LAST: 1, VOL: 2, TS: 3};

// A stale row's last update, as a time of day on the viewer's clock (24 h).
const clock = new Intl.DateTimeFormat('en-GB', {hour: '2-digit', minute: '2-digit', second: '2-digit'});

// High, low and volume follow at most once a second: they move with nearly every tick and
// nobody reads them that fast.
export const SECONDARY_MS = 1000;

function cellsOf(tr) {
  return {
    last: tr.querySelector('td.last .v'), chg: tr.querySelector('td.chg .v'), pct: tr.querySelector('td.pct .v'),
    chgTd: tr.querySelector('td.chg'), pctTd: tr.querySelector('td.pct'),
    high: tr.querySelector('td.high .v'), low: tr.querySelector('td.low .v'), vol: tr.querySelector('td.vol .v'),
    name: tr.querySelector('.name'), tag: tr.querySelector('.tag'),
    flash: tr.querySelector('.fl'),
  };
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

/**
 * @param els {tbody, scroller, rowTemplate}
 * @param deps {sparks, chart, market() -> {state, reason}}
 * @param hooks {dirty(row, direction), paused(row), removed(row)}
 */
export function createRows({tbody, scroller, rowTemplate}, {sparks, chart, market}, hooks) {
  /** sym -> {tr, cells, text, name, paused, decimals, prev, q, spark, dir, ...} */
  const rows = new Map();
  /** Short rows for symbols not (yet) on the board: a `q` may overtake the `sym` that adds them. */
  const unlisted = new Map();
  /** name of every listed symbol (for the watchlist's completion). */
  const names = new Map();

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
      tr, sym, cells: cellsOf(tr), text: {}, name: '', paused: false, staleSince: 0, decimals: 2, prev: NaN, q: null,
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
    hooks.removed(row);
  }

  /** Write a row's quote into its cells; only cells whose text changed are touched. The price
   *  columns (last, change, %) follow every frame; high, low and volume at most once a second
   *  (SECONDARY_MS) unless `all`. Returns true when those three were left for later. */
  function render(row, now, all = false) {
    const {cells, q, decimals} = row;
    const quiet = market().state === 'halted' ? 'halted' : row.paused ? 'paused' : '';
    const tag = quiet || (row.staleSince ? `stale since ${clock.format(row.staleSince)}` : '');
    if (row.text.tag !== tag) {
      row.text.tag = tag;
      row.tr.classList.toggle('paused', Boolean(quiet));
      row.tr.classList.toggle('stale', Boolean(tag) && !quiet);
      cells.tag.textContent = tag || 'paused';
      cells.tag.hidden = !tag;
    }
    if (row.text.name !== row.name) {
      put(row, 'name', cells.name, row.name);
      cells.name.title = row.name;
    }
    if (!q) return false;
    const change = q.last - q.prev;
    const pct = q.prev ? (change / q.prev) * 100 : NaN;
    const chgText = fmtSigned(change, decimals);
    put(row, 'last', cells.last, fmtPrice(q.last, decimals));
    put(row, 'chg', cells.chg, chgText);
    put(row, 'pct', cells.pct, Number.isFinite(pct) ? fmtSigned(pct, 2) + '%' : '–');
    let deferred = true;
    if (all || now - row.secondaryAt >= SECONDARY_MS) {
      row.secondaryAt = now;
      deferred = false;
      put(row, 'high', cells.high, fmtPrice(q.high, decimals));
      put(row, 'low', cells.low, fmtPrice(q.low, decimals));
      put(row, 'vol', cells.vol, fmtVolume(q.volume));
    }
    // Colour from the rounded text, so a change shown as 0.00 is neutral, not green.
    putSign(row, chgText.startsWith('+') ? 1 : chgText.startsWith('-') ? -1 : 0);
    return deferred;
  }

  /** Fold a short row into a row's quote; returns the direction of the last price. */
  function foldShort(row, r) {
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

  /** The whole symbol list (`hello`, `sym`): add, update and drop rows to match. */
  function setSymbols(list) {
    const listed = new Set();
    names.clear();
    for (const s of list) {
      listed.add(s.s);
      names.set(s.s, s.name || '');
      const row = rows.get(s.s) || createRow(s.s);
      row.name = s.name || '';
      const paused = Boolean(s.paused);
      if (paused && !row.paused) hooks.paused(row);  // a paused row must not look like it just traded
      row.paused = paused;
      row.decimals = decimalsFor(s.tick);
      // An admin may change the previous close; quote frames do not repeat it.
      if (Number.isFinite(s.prev)) {
        row.prev = s.prev;
        row.spark.prev = s.prev;
        if (row.q) row.q.prev = s.prev;
      }
      const early = unlisted.get(s.s);
      if (early) foldShort(row, early);
      hooks.dirty(row, 0);
    }
    for (const sym of [...rows.keys()]) {
      if (!listed.has(sym)) removeRow(sym);
    }
    unlisted.clear();
  }

  /** Full rows (a `snap`): a resync, not a tick, so no flash. */
  function applyFull(list) {
    for (const r of list) {
      const row = rows.get(r[FULL.SYM]);
      if (!row) continue;  // not listed (any more): the next `sym` decides
      row.q = {
        last: r[FULL.LAST], prev: r[FULL.PREV], open: r[FULL.OPEN], high: r[FULL.HIGH],
        low: r[FULL.LOW], volume: r[FULL.VOL], ts: r[FULL.TS],
      };
      if (r[FULL.TS]) sparks.push(row.spark, r[FULL.LAST], r[FULL.TS]);
      hooks.dirty(row, 0);
    }
  }

  /** Short rows (a `q`); one for a symbol not listed yet waits for the `sym` that lists it. */
  function applyShort(list) {
    for (const r of list) {
      const row = rows.get(r[SHORT.SYM]);
      if (!row) {
        unlisted.set(r[SHORT.SYM], r);
        continue;
      }
      hooks.dirty(row, foldShort(row, r));
    }
  }

  /** The stale symbols (`stale`, or a polled snap's `stale`): symbol -> time of its newest row
   *  (epoch ms). The whole set: every other row is live. */
  function setStale(since) {
    for (const row of rows.values()) {
      const at = Number(since[row.sym]) || 0;
      if (row.staleSince === at) continue;
      row.staleSince = at;
      hooks.dirty(row, 0);
    }
  }

  /** Watchlist alone (`only`): only its rows, in its order; otherwise every row in ticker order.
   *  Returns the symbols shown, in order. */
  function show(only, symbols) {
    const order = only ? symbols.filter((s) => rows.has(s)) : [...rows.keys()].sort();
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
    return order;
  }

  return {rows, names, adoptServerRows, render, setSymbols, applyFull, applyShort, setStale, show};
}
