/* How the page reaches the quote stream. The board (board.js) sees only decoded server messages
 * and a few events; the transport owns the connection, its reconnects and its liveness, so that
 * another transport (Server-Sent Events, polling) can replace this one and deliver the same
 * messages (docs/PROTOCOL.md, "Other transports").
 *
 * A transport is made with hooks from the board:
 *   opened()                   the link is up (the server's `hello` comes next)
 *   message(msg, wireBytes)    one decoded server message, and what it cost on the wire
 *   closed({code, reason})     the link is down; the transport has scheduled its own retry
 *   changed()                  the transport's state moved (re-render the indicator)
 * and offers:
 *   name                       'WebSocket'
 *   start()                    connect now
 *   send(obj) -> bool          a client request (`sub`, `unsub`, `resume`, `ack`); false if not open
 *   stop()                     give the link up for good (another transport takes over)
 *   restart(why)               drop the link and reconnect after the usual backoff
 *   reconnectNow()             skip the rest of a backoff wait (network back, tab visible)
 *   status() -> {open, connecting, retryAt, failures, connects, lastFrameAt}
 */
'use strict';

// Reconnection: exponential backoff with full jitter, so that a restarted server is not hit by
// every page at the same instant.
const RETRY_BASE_MS = 500;
const RETRY_CAP_MS = 15000;
const STABLE_AFTER_MS = 5000;        // a connection up this long resets the backoff

// Liveness: a quiet market sends nothing, so we ping when the line is quiet; a link that answers
// nothing at all is dead (a half-open TCP connection never "closes").
const PING_AFTER_MS = 2000;
const DEAD_AFTER_MS = 15000;
const CHECK_MS = 500;

const PROTOCOL_VERSION = 1;
// Closes that retrying soon cannot fix (flood or policy, a frame too big): wait the full cap.
// 4008/4009 since the protocol's own codes moved to 4000+ (docs/PROTOCOL.md); 1008/1009 for
// older servers.
const CLOSE_NEEDS_A_FIX = new Set([1008, 1009, 4008, 4009]);

/** Bytes of `text` as UTF-8, without allocating an encoded copy of every frame. */
export function utf8Length(text) {
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

/** Size on the wire of a server frame: payload plus its header (server frames are unmasked). */
export function wireSize(payload) {
  return payload + (payload < 126 ? 2 : payload < 65536 ? 4 : 10);
}

/** Full jitter: a uniform delay in [0, min(cap, base * 2^failures)). */
export function backoffDelay(failures, random = Math.random) {
  return random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** failures);
}

/** The page names the protocol version it speaks (docs/PROTOCOL.md, "Versioning"). */
function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws/quotes/?v=${PROTOCOL_VERSION}`;
}

export function createWebSocketTransport(hooks) {
  let ws = null;
  let failures = 0;          // attempts in a row that did not stay up STABLE_AFTER_MS
  let retryTimer = 0;
  let retryAt = 0;
  let stableTimer = 0;
  let connects = 0;
  let lastFrameAt = 0;
  let lastPingAt = 0;
  let pingId = 0;

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    retryAt = 0;
    let socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (err) {
      console.warn('ticker: cannot open the socket', err);
      scheduleReconnect();
      return;
    }
    ws = socket;
    socket.onopen = onOpen;
    socket.onmessage = onMessage;
    socket.onclose = onClose;
    socket.onerror = () => {};  // every error is followed by `close`, handled there
    hooks.changed();
  }

  function onOpen() {
    connects += 1;
    lastFrameAt = lastPingAt = performance.now();
    // Only a connection that stays up resets the backoff: a server that accepts and then drops
    // every connection must not be hammered.
    stableTimer = setTimeout(() => { failures = 0; }, STABLE_AFTER_MS);
    hooks.opened();
    hooks.changed();
  }

  function onMessage(event) {
    lastFrameAt = performance.now();
    if (typeof event.data !== 'string') {
      hooks.message(null, wireSize(event.data.size ?? event.data.byteLength ?? 0));
      return;  // the protocol has text frames only
    }
    let msg = null;
    try {
      msg = JSON.parse(event.data);
    } catch (err) {
      console.warn('ticker: frame is not JSON', err);
    }
    hooks.message(msg, wireSize(utf8Length(event.data)));
  }

  function onClose(event) {
    if (event.code !== 1000) {
      console.info(`ticker: socket closed (${event.code}${event.reason ? ' ' + event.reason : ''})`);
    }
    detach();
    if (CLOSE_NEEDS_A_FIX.has(event.code)) {
      failures = Math.max(failures, Math.ceil(Math.log2(RETRY_CAP_MS / RETRY_BASE_MS)));
    }
    scheduleReconnect();
    hooks.closed({code: event.code, reason: event.reason});
  }

  /** Forget the current socket: no handler of it may run after this. */
  function detach() {
    clearTimeout(stableTimer);
    const socket = ws;
    ws = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
      socket.close(1000, 'client reset');
    }
  }

  function scheduleReconnect() {
    const delay = backoffDelay(failures);
    failures += 1;
    retryAt = performance.now() + delay;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
    hooks.changed();
  }

  function isOpen() {
    return Boolean(ws) && ws.readyState === WebSocket.OPEN;
  }

  function send(obj) {
    if (!isOpen()) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  /** Keep a quiet connection honest: ping it, and drop it when nothing comes back. */
  function checkLiveness() {
    if (!isOpen()) return;
    const now = performance.now();
    const quiet = now - lastFrameAt;
    if (quiet > DEAD_AFTER_MS) {
      restart('no frame for a while');
      return;
    }
    if (quiet > PING_AFTER_MS && now - lastPingAt > PING_AFTER_MS) {
      lastPingAt = now;
      pingId += 1;
      send({op: 'ping', id: pingId});
    }
  }

  function restart(why) {
    console.info(`ticker: ${why}; reconnecting`);
    const wasOpen = Boolean(ws);
    detach();
    scheduleReconnect();
    if (wasOpen) hooks.closed({code: 0, reason: why});
  }

  const liveness = setInterval(checkLiveness, CHECK_MS);

  return {
    name: 'WebSocket',
    start: connect,
    /** Give the connection up for good (the page moves to another transport). */
    stop() {
      clearTimeout(retryTimer);
      retryTimer = 0;
      clearInterval(liveness);
      detach();
    },
    send,
    restart,
    reconnectNow() {
      if (retryTimer) connect();
    },
    status() {
      return {
        open: isOpen(),
        connecting: Boolean(ws) && ws.readyState === WebSocket.CONNECTING,
        retryAt, failures, connects, lastFrameAt,
      };
    },
  };
}
