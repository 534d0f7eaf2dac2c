/* The page's session on the quote stream: every message in and out, and what they leave behind.
 * No DOM: the board (board.js), the status (status.js) and the wire panel (wire.js) read its
 * `stats` and `link`, which are read-only views, and hear from it through the hooks they give.
 * This module is the only writer of the counters and the link state.
 *
 * Wire protocol v1 (docs/PROTOCOL.md; frame shapes in ticker/protocol.py). The server speaks first
 * with `hello`; we answer `sub` on a first connection, or `resume` with the epoch/seq we hold after
 * a reconnect, so the server can send only what we missed. Then `snap` (full rows) and `q` (short
 * rows) keep prices current and `sym` changes the set of rows. Each decoded server message comes
 * from whichever transport (transport.js, fallback.js) brought it.
 */
'use strict';

import {createSwitchingTransport} from './fallback.js';
import {SYNC_TIMEOUT_MS} from './rules.js';

/** A view of `obj` that reads its current fields and refuses writes (modules are strict). */
function readOnly(obj) {
  const view = {};
  for (const key of Object.keys(obj)) Object.defineProperty(view, key, {get: () => obj[key], enumerable: true});
  return Object.freeze(view);
}

/**
 * @param start {epoch, seq, retryWsMs}: the position the page was rendered at, and how often to
 *   try the WebSocket again while on a fallback (undefined: the transport's default)
 * @param board the board's hooks:
 *   wanted() -> '*' | [..]   what the board shows, so what this connection should receive
 *   symbols(list)            the whole symbol list, from `hello` or `sym`
 *   market({state, reason})  the market's state moved
 *   source(text)             where the prices come from, from `hello` and `sym`
 *   snap(rows)               full rows of a `snap` to apply (a resync: no flash)
 *   quotes(rows)             short rows of a `q` to apply
 *   notice(msg)              an `err` from the server (the connection stays open)
 *   changed()                the link moved: re-derive the indicator
 *   subscribed()             the subscription moved
 */
export function createSession(start, board) {
  /** The counters; window.tickerState shows them. */
  const stats = {
    epoch: start.epoch || '',
    seq: start.seq || 0,
    frames: 0,
    bytes: 0,
    node: '',
    connects: 0,
    transport: '',
    lastFrameAt: 0,   // performance.now() of the last frame of any kind
    lastQuoteAt: 0,   // performance.now() of the last snap/q applied
    subscribed: null, // what this connection asked for: '*' or a list of tickers
    market: Object.freeze({state: 'open', reason: ''}),  // the market's state, from hello and sym
  };

  /** Where we stand on the current connection. */
  const link = {
    pendingOp: '',        // the subscription request awaiting its first quotes
    resumable: false,     // we have been subscribed before: send `resume`, not `sub`
    synced: false,        // quotes received on the current connection (or nothing to receive)
    openedAt: 0,
  };

  let ackEveryMs = 0;
  let lastAck = {at: 0, seq: -1};

  // ------------------------------------------------------------ messages in

  /** `hello` and `sym` both carry the market's state; the board hears of it when it moves. */
  function applyMarket(market) {
    const state = market && market.state === 'halted' ? 'halted' : 'open';
    const reason = (market && market.reason) || '';
    if (state === stats.market.state && reason === stats.market.reason) return;
    stats.market = Object.freeze({state, reason});
    board.market(stats.market);
  }

  function gotQuotes(seq) {
    if (Number.isInteger(seq)) stats.seq = seq;
    stats.lastQuoteAt = performance.now();
    link.synced = true;
    link.pendingOp = '';
  }

  /** One decoded server message; `wireBytes` is what it cost on the wire. `null` is a frame that
   *  could not be decoded: counted, ignored. */
  function handleMessage(msg, wireBytes) {
    stats.frames += 1;
    stats.bytes += wireBytes;
    stats.lastFrameAt = performance.now();
    if (!msg) return;
    switch (msg.t) {
      case 'hello': onHello(msg); break;
      case 'snap':
        // A server that resynced onto a new feed run says so here (no new `hello` comes).
        if (msg.epoch) stats.epoch = msg.epoch;
        board.snap(msg.q);
        if (msg.stale) board.stale(msg.stale);  // polling: the stale symbols ride on the snap
        gotQuotes(msg.seq);
        break;
      case 'q': board.quotes(msg.q); gotQuotes(msg.seq); break;
      case 'sym':
        board.symbols(msg.symbols || []);
        applyMarket(msg.market);
        if (msg.source) board.source(msg.source);  // a feed's first batch after a cold start names it
        break;
      case 'stale': board.stale(msg.s || {}); break;
      case 'err': onError(msg); break;
      default: break;  // `pong`, and kinds newer servers may send: nothing to do
    }
  }

  function onHello(msg) {
    ackEveryMs = (msg.limits && msg.limits.ack_ms) || 0;
    lastAck = {at: 0, seq: -1};
    // A new epoch means the feed restarted: what we hold belongs to another run.
    if (stats.epoch && msg.epoch !== stats.epoch) {
      stats.seq = 0;
      link.synced = false;
    }
    const canResume = link.resumable && stats.epoch === msg.epoch && stats.seq > 0;
    stats.epoch = msg.epoch;
    stats.node = msg.node || '';
    board.stale({});  // a new connection: its server says again which symbols are stale
    board.symbols(msg.symbols || []);
    applyMarket(msg.market);
    if (msg.source) board.source(msg.source);
    const want = board.wanted();
    if (canResume && (want === '*' || want.length)) {
      stats.subscribed = want;
      link.pendingOp = 'resume';
      transport.send({op: 'resume', epoch: stats.epoch, seq: stats.seq, symbols: want});
    } else {
      subscribeFresh(want);
    }
    link.resumable = true;
    board.subscribed();
  }

  /** Errors are recoverable (the server keeps the connection): the board shows them, and if our
   *  `resume` was refused, we fall back to a plain subscription and its snapshot. */
  function onError(msg) {
    board.notice(msg);
    if (!link.synced && link.pendingOp === 'resume') subscribeFresh(stats.subscribed ?? board.wanted());
  }

  // ------------------------------------------------------------ the subscription

  function subscribeFresh(want) {
    stats.subscribed = want;
    if (want === '*' || want.length) {
      link.pendingOp = 'sub';
      transport.send({op: 'sub', symbols: want});
    } else {
      // An empty watchlist shown alone: no subscription, so no snapshot will come; we are in sync.
      link.synced = true;
      link.pendingOp = '';
    }
  }

  /** What the board shows changed: move the subscription to match, in place. */
  function follow() {
    const want = board.wanted();
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
    board.subscribed();
  }

  // ------------------------------------------------------------ timers

  /** Tell the server the last seq we applied, every `limits.ack_ms` of its `hello` (0 or absent:
   *  it does not want acks) when it moved (docs/PROTOCOL.md, "Slow clients"). On a timer, not per
   *  frame, so the ack that shows we caught up is sent even when no frame follows it. Then the
   *  sync rule: a link open this long without its snapshot starts over. */
  function tick(now) {
    if (ackEveryMs && stats.seq !== lastAck.seq && now - lastAck.at >= ackEveryMs) {
      if (transport.send({op: 'ack', seq: stats.seq})) lastAck = {at: now, seq: stats.seq};
    }
    if (transport.status().open && !link.synced && now - link.openedAt > SYNC_TIMEOUT_MS) {
      transport.restart('no snapshot');
    }
  }

  // ------------------------------------------------------------ the transport

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
      board.changed();
    },
    changed() {
      stats.transport = transport.name;
      board.changed();
    },
  }, () => ({symbols: board.wanted(), epoch: stats.epoch, seq: stats.seq, resumable: link.resumable && stats.seq > 0}),
  {retryWsMs: start.retryWsMs});
  stats.transport = transport.name;

  return {
    stats: readOnly(stats),
    link: readOnly(link),
    /** The transport's own state: {open, connecting, retryAt, failures, connects, lastFrameAt}. */
    status: () => transport.status(),
    get transportName() { return transport.name; },
    start: () => transport.start(),
    reconnectNow: () => transport.reconnectNow(),
    follow,
    tick,
  };
}
