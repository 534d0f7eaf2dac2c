/* The client rules of the quote stream, as the page keeps them (docs/PROTOCOL.md, "Close codes",
 * "Reconnect and resume"). The Python clients keep the same ones in ticker/clients/rules.py, and
 * tests/test_client_rules.py reads the constants of this file to hold the two equal: a constant
 * is `export const NAME = <number or set of numbers>;`, one a line.
 */
'use strict';

/** The protocol version the page speaks, named in the socket's URL ("Versioning"). */
export const PROTOCOL_VERSION = 1;

// Reconnection: exponential backoff with full jitter, so that a restarted server is not hit by
// every page at the same instant.
export const RETRY_BASE_MS = 500;
export const RETRY_CAP_MS = 15000;
export const STABLE_AFTER_MS = 5000;        // a connection up this long resets the backoff

// A server going away (a deploy's SIGTERM) closes with 1012: reconnect at once, spread over a
// short jitter so that its pages do not arrive at the other servers in one instant; no backoff.
export const CLOSE_RECONNECT_AT_ONCE = new Set([1012]);
export const RESTART_JITTER_MS = 500;

// Closes that retrying soon cannot fix (flood or policy, a frame too big): wait the full cap.
// 4008/4009 since the protocol's own codes moved to 4000+; 1008/1009 for older servers. Every
// other close but 1012 (1000, 1001, 1006, 1011, 1013, 4013) reconnects after the usual backoff.
export const CLOSE_NEEDS_A_FIX = new Set([1008, 1009, 4008, 4009]);

// Liveness: a quiet market sends nothing, so we ping when the line is quiet; a link that answers
// nothing at all is dead (a half-open TCP connection never "closes"); a link open this long
// without its snapshot starts over.
export const PING_AFTER_MS = 2000;
export const DEAD_AFTER_MS = 15000;
export const SYNC_TIMEOUT_MS = 10000;

// Stale marks. Open, but no frame at all for STALE_AFTER_MS: stale. Frames (pongs) arrive, but
// no quote for FEED_DOWN_AFTER_MS while something watched trades: the feed is down and the page
// goes stale. Below the 5 s freshness promise by more than a batch's delivery time, so no price
// is ever shown as live once it is 5 s old (docs/RELIABILITY.md, "Chaos").
export const STALE_AFTER_MS = 5000;
export const FEED_DOWN_AFTER_MS = 4000;

/** Failures in a row after which the backoff waits the full cap: 0.5 s * 2^5 = 16 s > 15 s. */
const FAILURES_FOR_CAP = Math.ceil(Math.log2(RETRY_CAP_MS / RETRY_BASE_MS));

/** Full jitter: a uniform delay in [0, min(cap, base * 2^failures)). */
export function backoffDelay(failures, random = Math.random) {
  return random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** failures);
}

/** The failure count a close with `code` leaves: a close that needs a fix waits the full cap; a
 *  restart starts the count over (the server went away, the page did nothing wrong). */
export function failuresAfterClose(code, failures) {
  if (CLOSE_NEEDS_A_FIX.has(code)) return Math.max(failures, FAILURES_FOR_CAP);
  return CLOSE_RECONNECT_AT_ONCE.has(code) ? 0 : failures;
}

/** The wait (ms) before reconnecting after a close with `code` (0: none yet): a restart's short
 *  jitter, else the backoff for `failures`. */
export function reconnectDelay(code, failures, random = Math.random) {
  return CLOSE_RECONNECT_AT_ONCE.has(code) ? random() * RESTART_JITTER_MS : backoffDelay(failures, random);
}
