/* What every transport shares (transport.js, fallback.js): the socket's URL, the decoding of a
 * server frame, the size of what came over the wire, and the retry state with its backoff. */
'use strict';

import {failuresAfterClose, PROTOCOL_VERSION, reconnectDelay} from './rules.js';

/** The socket's URL; the page names the protocol version it speaks (docs/PROTOCOL.md, "Versioning"). */
export function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws/quotes/?v=${PROTOCOL_VERSION}`;
}

/** One server frame as a message; null (and a warning naming `what`) when it is not JSON. */
export function decode(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    console.warn(`ticker: ${what} is not JSON`, err);
    return null;
  }
}

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

/**
 * A transport's retries: the failures in a row and the one pending attempt. `schedule()` runs
 * `attempt` after the wait the last close asks for (a restart's jitter) or else the backoff for
 * the failures so far, and counts one more; `succeeded()` resets the count; `closed(code)`
 * applies the close code's rule (rules.js); `now()` skips the rest of a wait; `cancel()` drops it.
 */
export function createRetry(attempt) {
  let failures = 0;
  let timer = 0;
  let at = 0;
  let lastClose = 0;  // the close code the next schedule() answers (0: none)

  function cancel() {
    clearTimeout(timer);
    timer = 0;
    at = 0;
  }

  function fire() {
    cancel();
    attempt();
  }

  return {
    get failures() { return failures; },
    /** performance.now() of the pending attempt; 0 when none is pending. */
    get at() { return at; },
    get pending() { return Boolean(timer); },
    schedule() {
      const delay = reconnectDelay(lastClose, failures);
      lastClose = 0;
      failures += 1;
      clearTimeout(timer);
      at = performance.now() + delay;
      timer = setTimeout(fire, delay);
    },
    failed() { failures += 1; },
    succeeded() { failures = 0; },
    closed(code) {
      failures = failuresAfterClose(code, failures);
      lastClose = code;
    },
    now() { if (timer) fire(); },
    cancel,
  };
}
