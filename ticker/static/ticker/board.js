/* Live board: keeps the server-rendered quote table current over a WebSocket.
 *
 * Wire protocol v1 (docs/PROTOCOL.md; frame shapes in ticker/protocol.py). The server
 * speaks first with `hello`; we answer `sub "*"` on a first connection, or `resume` with
 * the epoch/seq we hold after a reconnect, so the server can send only what we missed.
 * Then `snap` (full rows) and `q` (short rows) keep prices current and `sym` changes the
 * set of rows. No framework and no build step: this file is served as it is.
 */
'use strict';

(() => {
  // Reconnection: exponential backoff with full jitter, so that a restarted server is not
  // hit by every page at the same instant.
  const RETRY_BASE_MS = 500;
  const RETRY_CAP_MS = 15000;
  const STABLE_AFTER_MS = 5000;        // a connection up this long resets the backoff
  const OFFLINE_AFTER_FAILURES = 6;    // failed attempts in a row (~10 s) before we say "offline"

  // Liveness: a quiet market sends nothing, so we ping when the line is quiet; a link that
  // answers nothing at all is stale, then dead (a half-open TCP connection never "closes").
  const PING_AFTER_MS = 2000;
  const STALE_AFTER_MS = 5000;
  const DEAD_AFTER_MS = 15000;
  const SYNC_TIMEOUT_MS = 10000;       // open but no snapshot this long: start over

  const TICK_MS = 250;                 // refresh of the age, countdown and wire panel
  const NOTICE_MS = 6000;
  const FLASH_MS = 450;
  const RATE_WINDOW_MS = 5000;

  const PROTOCOL_VERSION = 1;
  // Closes that retrying soon cannot fix (1008 flood/policy, 1009 frame too big): wait the full cap.
  const CLOSE_NEEDS_A_FIX = new Set([1008, 1009]);

  // Indexes into a full row (`snap`) and a short row (`q`), see ticker/protocol.py.
  const FULL = {SYM: 0, LAST: 1, PREV: 2, OPEN: 3, HIGH: 4, LOW: 5, VOL: 6, TS: 7};
  const SHORT = {SYM: 0, LAST: 1, VOL: 2, TS: 3};

  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const table = $('board');
  const tbody = $('board-body');
  const rowTemplate = $('row-template');
  const conn = $('conn');
  const connLabel = $('conn-label');
  const ageEl = $('age');
  const noticeEl = $('notice');
  const wire = {
    bytes: $('wire-bytes'), frames: $('wire-frames'), rate: $('wire-rate'), avg: $('wire-avg'),
    seq: $('wire-seq'), epoch: $('wire-epoch'), node: $('wire-node'),
  };
  const breadth = {up: $('breadth-up'), down: $('breadth-down'), count: $('breadth-count')};

  /** Everything a test (or someone in devtools) may want to read. Mutated in place. */
  const stats = {
    epoch: app.dataset.epoch || '',
    seq: Number(app.dataset.seq) || 0,
    frames: 0,
    bytes: 0,
    node: '',
    state: 'reconnecting',
    connects: 0,
    lastFrameAt: 0,   // performance.now() of the last frame of any kind
    lastQuoteAt: 0,   // performance.now() of the last snap/q applied
  };
  window.tickerState = stats;

  /** The current connection and what we know about reconnecting it. */
  const link = {
    ws: null,
    failures: 0,          // attempts in a row that did not stay up STABLE_AFTER_MS
    retryTimer: 0,
    retryAt: 0,
    stableTimer: 0,
    openedAt: 0,
    pendingOp: '',        // the subscription request awaiting its first quotes
    resumable: false,     // we have been subscribed before: send `resume`, not `sub`
    synced: false,        // quotes received on the current connection
    everLive: false,
    pingId: 0,
    lastPingAt: 0,
  };

  /** sym -> {tr, cells, name, paused, decimals, prev, q: {last, prev, open, high, low, volume, ts} | null} */
  const rows = new Map();
  /** Short rows for symbols not (yet) on the board: a `q` may overtake the `sym` that adds them. */
  const unlisted = new Map();

  const reduceMotion = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  const flashColors = (() => {
    const css = getComputedStyle(document.documentElement);
    return {up: css.getPropertyValue('--flash-up').trim(), down: css.getPropertyValue('--flash-down').trim()};
  })();

  // ---------------------------------------------------------------- formatting

  const grouped = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});

  function decimalsFor(tick) {
    if (!(tick > 0)) return 2;
    return Math.min(6, Math.max(2, Math.ceil(-Math.log10(tick) - 1e-9)));
  }

  function fmtPrice(value, decimals) {
    return Number.isFinite(value) ? value.toFixed(decimals) : '–';
  }

  /** "+1.25", "-0.40", "0.00": the sign comes from the rounded text, so +0.00 never shows. */
  function fmtSigned(value, decimals) {
    if (!Number.isFinite(value)) return '–';
    const text = Math.abs(value).toFixed(decimals);
    if (Number(text) === 0) return text;
    return (value > 0 ? '+' : '-') + text;
  }

  function fmtVolume(v) {
    if (!Number.isFinite(v)) return '–';
    if (v < 100000) return grouped.format(v);
    if (v < 1e6) return (v / 1e3).toFixed(1) + 'K';
    if (v < 1e9) return (v / 1e6).toFixed(2) + 'M';
    return (v / 1e9).toFixed(2) + 'B';
  }

  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / (1024 * 1024)).toFixed(2) + ' MB';
  }

  function fmtSeconds(ms) {
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 60) return Math.round(s) + ' s';
    if (s < 3600) return Math.round(s / 60) + ' min';
    return Math.round(s / 3600) + ' h';
  }

  /** Bytes of `text` as UTF-8, without allocating an encoded copy of every frame. */
  function utf8Length(text) {
    let n = text.length;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x80) continue;
      if (c < 0x800) n += 1;
      else if (c >= 0xd800 && c <= 0xdbff) { n += 2; i++; }  // surrogate pair: 4 bytes for 2 units
      else n += 2;
    }
    return n;
  }

  /** Size on the wire: payload plus the frame header (server frames are unmasked). */
  function wireSize(payload) {
    return payload + (payload < 126 ? 2 : payload < 65536 ? 4 : 10);
  }

  // ---------------------------------------------------------------- the table

  function cellsOf(tr) {
    const pick = (cls) => tr.querySelector('td.' + cls);
    return {
      last: pick('last'), chg: pick('chg'), pct: pick('pct'),
      high: pick('high'), low: pick('low'), vol: pick('vol'),
      name: tr.querySelector('.name'), tag: tr.querySelector('.tag'),
    };
  }

  /** Adopt the rows the server rendered, so the page holds state before the socket opens. */
  function adoptServerRows() {
    for (const tr of tbody.querySelectorAll('tr[data-symbol]')) {
      const d = tr.dataset;
      rows.set(d.symbol, {
        tr,
        cells: cellsOf(tr),
        name: tr.querySelector('.name').textContent,
        paused: tr.classList.contains('paused'),
        decimals: 2,
        prev: Number(d.prev),
        q: {
          last: Number(d.last), prev: Number(d.prev), open: Number(d.open),
          high: Number(d.high), low: Number(d.low), volume: Number(d.volume), ts: 0,
        },
      });
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
    const row = {tr, cells: cellsOf(tr), name: '', paused: false, decimals: 2, prev: NaN, q: null};
    rows.set(sym, row);
    return row;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function setDirection(el, value) {
    el.classList.toggle('up', value > 0);
    el.classList.toggle('down', value < 0);
  }

  /** Write a row's quote into its cells; only cells whose text changed are touched. */
  function renderRow(row) {
    const {cells, q, decimals} = row;
    row.tr.classList.toggle('paused', row.paused);
    cells.tag.hidden = !row.paused;
    setText(cells.name, row.name);
    cells.name.title = row.name;
    if (!q) return;
    const change = q.last - q.prev;
    const pct = q.prev ? (change / q.prev) * 100 : NaN;
    const chgText = fmtSigned(change, decimals);
    const pctText = fmtSigned(pct, 2);
    setText(cells.last, fmtPrice(q.last, decimals));
    setText(cells.chg, chgText);
    setText(cells.pct, Number.isFinite(pct) ? pctText + '%' : '–');
    setText(cells.high, fmtPrice(q.high, decimals));
    setText(cells.low, fmtPrice(q.low, decimals));
    setText(cells.vol, fmtVolume(q.volume));
    // Colour from the rounded text, so a change shown as 0.00 is neutral, not green.
    const sign = chgText.startsWith('+') ? 1 : chgText.startsWith('-') ? -1 : 0;
    setDirection(cells.chg, sign);
    setDirection(cells.pct, sign);
  }

  /** A brief green/red background on the last price. The Web Animations API restarts
   *  cleanly on every tick, without forcing a layout to replay a CSS animation. */
  function flash(row, direction) {
    if (reduceMotion || !direction || row.paused || typeof row.cells.last.animate !== 'function') return;
    const color = direction > 0 ? flashColors.up : flashColors.down;
    row.cells.last.animate(
      [{backgroundColor: color}, {backgroundColor: 'transparent'}],
      {duration: FLASH_MS, easing: 'ease-out'},
    );
  }

  function stopFlash(row) {
    if (typeof row.cells.last.getAnimations === 'function') {
      for (const animation of row.cells.last.getAnimations()) animation.cancel();
    }
  }

  function removeRow(sym) {
    rows.get(sym)?.tr.remove();
    rows.delete(sym);
  }

  // ---------------------------------------------------------------- protocol state

  /** `hello` and `sym` both carry the whole symbol list: add, update and drop rows to match. */
  function applySymbols(list) {
    const listed = new Set();
    for (const s of list) {
      listed.add(s.s);
      const row = rows.get(s.s) || createRow(s.s);
      row.name = s.name || '';
      if (s.paused && !row.paused) stopFlash(row);  // a paused row must not look like it just traded
      row.paused = Boolean(s.paused);
      row.decimals = decimalsFor(s.tick);
      // An admin may change the previous close; quote frames do not repeat it.
      if (Number.isFinite(s.prev)) {
        row.prev = s.prev;
        if (row.q) row.q.prev = s.prev;
      }
      const early = unlisted.get(s.s);
      if (early) applyShortRow(row, early);
      renderRow(row);
    }
    for (const sym of [...rows.keys()]) {
      if (!listed.has(sym)) removeRow(sym);
    }
    unlisted.clear();
    renderBreadth();
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
      renderRow(row);  // a snap is a resync, not a tick: no flash
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
    return direction;
  }

  function applyQuotes(msg) {
    for (const r of msg.q) {
      const row = rows.get(r[SHORT.SYM]);
      if (!row) {
        unlisted.set(r[SHORT.SYM], r);
        continue;
      }
      const direction = applyShortRow(row, r);
      renderRow(row);
      flash(row, direction);
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

  // ---------------------------------------------------------------- the connection

  /** The page names the protocol version it speaks (docs/PROTOCOL.md, "Versioning"). */
  function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws/quotes/?v=${PROTOCOL_VERSION}`;
  }

  function connect() {
    clearTimeout(link.retryTimer);
    link.retryTimer = 0;
    link.retryAt = 0;
    link.synced = false;
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (err) {
      console.warn('ticker: cannot open the socket', err);
      scheduleReconnect();
      return;
    }
    link.ws = ws;
    ws.onopen = onOpen;
    ws.onmessage = onMessage;
    ws.onclose = onClose;
    ws.onerror = () => {};  // every error is followed by `close`, handled there
    refreshState();
  }

  function onOpen() {
    stats.connects += 1;
    stats.lastFrameAt = link.openedAt = link.lastPingAt = performance.now();
    // Only a connection that stays up resets the backoff: a server that accepts and then
    // drops every connection must not be hammered.
    link.stableTimer = setTimeout(() => { link.failures = 0; }, STABLE_AFTER_MS);
    refreshState();
  }

  function onMessage(event) {
    const now = performance.now();
    stats.frames += 1;
    stats.lastFrameAt = now;
    if (typeof event.data !== 'string') {
      stats.bytes += wireSize(event.data.size ?? event.data.byteLength ?? 0);
      return;  // the protocol has text frames only
    }
    stats.bytes += wireSize(utf8Length(event.data));
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (err) {
      console.warn('ticker: frame is not JSON', err);
      return;
    }
    handleFrame(msg);
    refreshState();
  }

  /** Tell the server the last seq we applied, every `limits.ack_ms` of its `hello` (0 or
   *  absent: it does not want acks) when it moved (docs/PROTOCOL.md, "Slow clients"): a tab
   *  that stops reading (a frozen page) is then held by the server instead of buffered for,
   *  and resynced with a snapshot once it reads again. On a timer, not per frame, so the ack
   *  that shows we caught up is sent even when no frame follows it. */
  let ackEveryMs = 0;
  let lastAck = {at: 0, seq: -1};
  function acknowledge(now) {
    if (!ackEveryMs || stats.seq === lastAck.seq || now - lastAck.at < ackEveryMs) return;
    if (send({op: 'ack', seq: stats.seq})) lastAck = {at: now, seq: stats.seq};
  }

  function handleFrame(msg) {
    switch (msg.t) {
      case 'hello': return onHello(msg);
      case 'snap': return applySnap(msg);
      case 'q': return applyQuotes(msg);
      case 'sym': return applySymbols(msg.symbols || []);
      case 'err': return onError(msg);
      case 'pong': return undefined;
      default: return undefined;  // newer servers may send more kinds; ignore what we don't know
    }
  }

  function onHello(msg) {
    ackEveryMs = (msg.limits && msg.limits.ack_ms) || 0;
    lastAck = {at: 0, seq: -1};
    if (stats.epoch && msg.epoch !== stats.epoch) forgetState();
    const canResume = link.resumable && stats.epoch === msg.epoch && stats.seq > 0;
    stats.epoch = msg.epoch;
    stats.node = msg.node || '';
    applySymbols(msg.symbols || []);
    if (canResume) {
      link.pendingOp = 'resume';
      send({op: 'resume', epoch: stats.epoch, seq: stats.seq, symbols: '*'});
    } else {
      link.pendingOp = 'sub';
      send({op: 'sub', symbols: '*'});
    }
    link.resumable = true;
  }

  /** Errors are recoverable (the server keeps the connection): show them, and if our
   *  `resume` was refused, fall back to a plain subscription and its snapshot. */
  function onError(msg) {
    showNotice(`${msg.code}: ${msg.msg}`, msg);
    if (!link.synced && link.pendingOp === 'resume') {
      link.pendingOp = 'sub';
      send({op: 'sub', symbols: '*'});
    }
  }

  function send(obj) {
    if (!link.ws || link.ws.readyState !== WebSocket.OPEN) return false;
    link.ws.send(JSON.stringify(obj));
    return true;
  }

  function onClose(event) {
    if (event.code !== 1000) {
      console.info(`ticker: socket closed (${event.code}${event.reason ? ' ' + event.reason : ''})`);
    }
    detach();
    if (CLOSE_NEEDS_A_FIX.has(event.code)) {
      link.failures = Math.max(link.failures, Math.ceil(Math.log2(RETRY_CAP_MS / RETRY_BASE_MS)));
    }
    scheduleReconnect();
  }

  /** Forget the current socket: no handler of it may run after this. */
  function detach() {
    clearTimeout(link.stableTimer);
    const ws = link.ws;
    link.ws = null;
    link.synced = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, 'client reset');
  }

  /** Full jitter: a uniform delay in [0, min(cap, base * 2^failures)). */
  function scheduleReconnect() {
    const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** link.failures);
    const delay = Math.random() * ceiling;
    link.failures += 1;
    link.retryAt = performance.now() + delay;
    clearTimeout(link.retryTimer);
    link.retryTimer = setTimeout(connect, delay);
    refreshState();
  }

  /** Skip the rest of the wait (the network came back, the tab became visible). */
  function reconnectNow() {
    if (link.retryTimer) connect();
  }

  // ---------------------------------------------------------------- status

  function setState(state, label) {
    stats.state = state;
    if (conn.dataset.state !== state) conn.dataset.state = state;
    setText(connLabel, label);
    // Once we have been connected (or failed to), quotes shown while not live may be old:
    // grey them so nobody reads them as fresh. The first paint is fresh from the server.
    table.classList.toggle('stale', state !== 'live' && (link.everLive || link.failures > 0));
  }

  /** Derive the indicator from the socket, the last frame and the retry timer. */
  function refreshState() {
    const now = performance.now();
    const ws = link.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      const quiet = now - stats.lastFrameAt;
      if (!link.synced) setState('reconnecting', 'syncing…');
      else if (quiet > STALE_AFTER_MS) setState('stale', `stale · ${fmtSeconds(quiet)}`);
      else {
        link.everLive = true;
        setState('live', 'live');
      }
      return;
    }
    const offline = navigator.onLine === false || link.failures >= OFFLINE_AFTER_FAILURES;
    const state = offline ? 'offline' : 'reconnecting';
    const word = offline ? 'offline' : 'reconnecting…';
    if (ws) {
      setState(state, link.everLive || link.failures ? `${word} · attempt ${link.failures + 1}` : 'connecting…');
    } else {
      const wait = Math.max(0, link.retryAt - now);
      setState(state, `${word} · retry in ${fmtSeconds(wait)}`);
    }
  }

  /** Keep a quiet connection honest: ping it, and drop it when nothing comes back. */
  function checkLiveness(now) {
    const ws = link.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const quiet = now - stats.lastFrameAt;
    const unsynced = !link.synced && now - link.openedAt > SYNC_TIMEOUT_MS;
    if (quiet > DEAD_AFTER_MS || unsynced) {
      console.info(`ticker: ${unsynced ? 'no snapshot' : 'no frame'} for a while; reconnecting`);
      detach();
      scheduleReconnect();
      return;
    }
    if (quiet > PING_AFTER_MS && now - link.lastPingAt > PING_AFTER_MS) {
      link.lastPingAt = now;
      link.pingId += 1;
      send({op: 'ping', id: link.pingId});
    }
  }

  function renderAge(now) {
    if (!stats.lastQuoteAt) {
      setText(ageEl, 'waiting for data');
      return;
    }
    const age = now - stats.lastQuoteAt;
    setText(ageEl, `updated ${fmtSeconds(age)} ago`);
    ageEl.classList.toggle('old', age > STALE_AFTER_MS);
  }

  let noticeTimer = 0;
  function showNotice(text, detail) {
    console.warn('ticker: server error', detail);
    noticeEl.textContent = text;
    noticeEl.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeEl.hidden = true; }, NOTICE_MS);
  }

  function renderBreadth() {
    let up = 0;
    let down = 0;
    for (const row of rows.values()) {
      if (row.cells.chg.classList.contains('up')) up += 1;
      else if (row.cells.chg.classList.contains('down')) down += 1;
    }
    setText(breadth.up, `▲ ${up}`);
    setText(breadth.down, `▼ ${down}`);
    setText(breadth.count, `${rows.size} symbols`);
  }

  // Bytes per second over the last few seconds, from samples of the running total.
  const rateSamples = [];
  function renderWire(now) {
    rateSamples.push([now, stats.bytes]);
    while (rateSamples.length > 2 && now - rateSamples[0][0] > RATE_WINDOW_MS) rateSamples.shift();
    const [t0, b0] = rateSamples[0];
    const rate = now > t0 ? ((stats.bytes - b0) * 1000) / (now - t0) : 0;
    setText(wire.bytes, fmtBytes(stats.bytes));
    wire.bytes.title = `${grouped.format(stats.bytes)} bytes`;
    setText(wire.frames, grouped.format(stats.frames));
    setText(wire.rate, `${fmtBytes(Math.round(rate))}/s`);
    setText(wire.avg, stats.frames ? fmtBytes(Math.round(stats.bytes / stats.frames)) : '–');
    setText(wire.seq, grouped.format(stats.seq));
    setText(wire.epoch, stats.epoch || '–');
    setText(wire.node, stats.node || '–');
  }

  function tick() {
    const now = performance.now();
    checkLiveness(now);
    acknowledge(now);
    refreshState();
    renderAge(now);
    renderWire(now);
    renderBreadth();
  }

  // ---------------------------------------------------------------- start

  adoptServerRows();
  for (const row of rows.values()) renderRow(row);  // server text -> the same formats as live updates
  renderBreadth();
  window.addEventListener('online', reconnectNow);
  window.addEventListener('offline', refreshState);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });
  setInterval(tick, TICK_MS);
  connect();
})();
