/* How the page reaches the quote stream. The session (session.js) sees only decoded server
 * messages and a few events; the transport owns the connection, its reconnects and its liveness,
 * so that another transport (Server-Sent Events, polling) can replace this one and deliver the
 * same messages (docs/PROTOCOL.md, "Other transports").
 *
 * A transport is made with hooks from the session:
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

import {createRetry, decode, socketUrl, utf8Length, wireSize} from './link.js';
import {DEAD_AFTER_MS, PING_AFTER_MS, STABLE_AFTER_MS} from './rules.js';

const CHECK_MS = 500;               // how often the liveness rule (rules.js) is checked

export function createWebSocketTransport(hooks) {
  let ws = null;
  const retry = createRetry(connect);  // failures: attempts in a row that did not stay up STABLE_AFTER_MS
  let stableTimer = 0;
  let connects = 0;
  let lastFrameAt = 0;
  let lastPingAt = 0;
  let pingId = 0;

  function connect() {
    retry.cancel();
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
    stableTimer = setTimeout(retry.succeeded, STABLE_AFTER_MS);
    hooks.opened();
    hooks.changed();
  }

  function onMessage(event) {
    lastFrameAt = performance.now();
    if (typeof event.data !== 'string') {
      hooks.message(null, wireSize(event.data.size ?? event.data.byteLength ?? 0));
      return;  // the protocol has text frames only
    }
    hooks.message(decode(event.data, 'frame'), wireSize(utf8Length(event.data)));
  }

  function onClose(event) {
    if (event.code !== 1000) {
      console.info(`ticker: socket closed (${event.code}${event.reason ? ' ' + event.reason : ''})`);
    }
    detach();
    retry.closed(event.code);
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
    retry.schedule();
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
      retry.cancel();
      clearInterval(liveness);
      detach();
    },
    send,
    restart,
    reconnectNow: retry.now,
    status() {
      return {
        open: isOpen(),
        connecting: Boolean(ws) && ws.readyState === WebSocket.CONNECTING,
        retryAt: retry.at, failures: retry.failures, connects, lastFrameAt,
      };
    },
  };
}
