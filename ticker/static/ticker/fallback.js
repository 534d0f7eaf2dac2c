/* The transports a WebSocket falls back to, and the switch between them (docs/PROTOCOL.md,
 * "Other transports"). Each has the WebSocket transport's hooks and methods (transport.js), and
 * delivers the same decoded messages:
 *
 * - Server-Sent Events, `/sse/quotes/?symbols=…`: one-way. The subscription is in the URL and
 *   a resume is `?last=epoch:seq` (the browser's own reconnects send Last-Event-ID), so a `sub`,
 *   `unsub` or `resume` the board sends opens a new stream only when it asks for something the
 *   current one does not carry; an `ack` or `ping` has nothing to do.
 * - Polling, `/api/hello/` and `/api/quotes/?symbols=…` once a second, each with its ETag, so an
 *   unchanged answer costs a 304.
 *
 * `createSwitchingTransport` starts on the WebSocket; after FAILS_BEFORE_FALLBACK attempts in a
 * row that bring no `hello` (refused, or opened and silent), it moves to SSE, and from SSE to
 * polling the same way. While on a fallback it tries the WebSocket again every `retryWsMs` (the
 * server's TICKER_WS_RETRY_MS, handed over in the board's `data-ws-retry-ms`; RETRY_WS_MS without
 * it) and moves back as soon as one says `hello`.
 *
 * The socket's URL, the decoding of frames and the retry state are link.js's, shared with the
 * WebSocket transport.
 */
'use strict';

import {createRetry, decode, socketUrl, utf8Length} from './link.js';
import {createWebSocketTransport} from './transport.js';

const FAILS_BEFORE_FALLBACK = 3;
const HELLO_TIMEOUT_MS = 5000;
const RETRY_WS_MS = 60000;
const POLL_MS = 1000;
const HELLO_POLL_MS = 5000;
// The kinds an event stream carries: every server frame but `pong` (a stream takes no `ping`).
const SSE_EVENTS = ['hello', 'snap', 'q', 'sym', 'stale', 'err'];

function symbolsParam(symbols) {
  return symbols === '*' ? '*' : symbols.join(',');
}

/** Server-Sent Events. `position()` says what to ask for when a stream opens. */
export function createSseTransport(hooks, position) {
  let source = null;
  let params = '';
  let connects = 0;
  let lastFrameAt = 0;
  const retry = createRetry(start);

  function open(symbols, last) {
    close();
    const query = new URLSearchParams({symbols: symbolsParam(symbols)});
    if (last) query.set('last', last);
    params = query.toString();
    const stream = new EventSource(`/sse/quotes/?${params}`);
    source = stream;
    stream.onopen = () => {
      connects += 1;
      lastFrameAt = performance.now();
      hooks.opened();
      hooks.changed();
    };
    for (const kind of SSE_EVENTS) {
      stream.addEventListener(kind, (event) => {
        lastFrameAt = performance.now();
        retry.succeeded();
        hooks.message(decode(event.data, 'event'), utf8Length(event.data) + kind.length + (event.lastEventId || '').length + 18);
      });
    }
    stream.onerror = () => {
      // The browser retries by itself (with Last-Event-ID) unless the answer was not an event
      // stream; either way the board is not live until the next hello.
      if (stream.readyState === EventSource.CLOSED) {
        source = null;
        retry.schedule();
      } else {
        retry.failed();
      }
      hooks.closed({code: 0, reason: 'event stream interrupted'});
      hooks.changed();
    };
    hooks.changed();
  }

  function close() {
    retry.cancel();
    if (source) {
      source.onopen = source.onerror = null;
      source.close();
      source = null;
    }
  }

  function start() {
    const at = position();
    open(at.symbols, at.resumable ? `${at.epoch}:${at.seq}` : '');
  }

  function send(obj) {
    if (!source) return false;
    if (obj.op !== 'sub' && obj.op !== 'resume' && obj.op !== 'unsub') return true;  // ack, ping: nothing to do
    const at = position();
    const query = new URLSearchParams({symbols: symbolsParam(at.symbols)});
    if (new URLSearchParams(params).get('symbols') !== query.get('symbols')) {
      open(at.symbols, at.resumable ? `${at.epoch}:${at.seq}` : '');
    }
    return true;
  }

  return {
    name: 'SSE',
    start,
    stop: close,
    send,
    restart(why) { console.info(`ticker: ${why}; reopening the event stream`); start(); },
    reconnectNow() { if (!source) start(); },
    status() {
      const open = Boolean(source) && source.readyState === EventSource.OPEN;
      return {open, connecting: Boolean(source) && !open, retryAt: retry.at, failures: retry.failures, connects, lastFrameAt};
    },
  };
}

/** Polling: the hello now and then, the quotes every second, both with their ETags. */
export function createPollingTransport(hooks, position) {
  let timer = 0;
  let helloAt = 0;
  let helloTag = '';
  let quotesTag = '';
  let connects = 0;
  const retry = createRetry(poll);
  let lastFrameAt = 0;
  let running = false;
  let open = false;

  async function get(url, tag) {
    const response = await fetch(url, {headers: tag ? {'If-None-Match': tag} : {}, cache: 'no-store'});
    if (response.status === 304) return {tag, text: null};
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return {tag: response.headers.get('ETag') || '', text: await response.text()};
  }

  function deliver(text) {
    lastFrameAt = performance.now();
    hooks.message(decode(text, 'poll'), utf8Length(text));
  }

  async function poll() {
    if (!running) return;
    try {
      const now = performance.now();
      if (!helloTag || now - helloAt > HELLO_POLL_MS) {
        const hello = await get('/api/hello/', helloTag);
        helloAt = now;
        if (!open) {
          open = true;
          connects += 1;
          hooks.opened();
        }
        if (hello.text) {
          helloTag = hello.tag;
          quotesTag = '';  // a new epoch or symbol list: the next quotes in full
          deliver(hello.text);
        }
      }
      const at = position();
      const symbols = at.symbols === '*' ? '' : at.symbols.join(',');
      const quotes = await get(`/api/quotes/?symbols=${encodeURIComponent(symbols)}`, quotesTag);
      if (quotes.text) {
        quotesTag = quotes.tag;
        deliver(quotes.text);
      } else {
        lastFrameAt = performance.now();
        hooks.message(null, 0);  // a 304 is news too: nothing changed, as of now
      }
      retry.succeeded();
    } catch (err) {
      retry.schedule();  // the next poll after the backoff
      if (open) {
        open = false;
        helloTag = quotesTag = '';
        hooks.closed({code: 0, reason: String(err)});
      }
    }
    hooks.changed();
    if (running && !retry.pending) timer = setTimeout(poll, POLL_MS);
  }

  return {
    name: 'polling',
    start() { running = true; poll(); },
    stop() { running = false; open = false; clearTimeout(timer); retry.cancel(); },
    send(obj) {
      if (obj.op === 'sub' || obj.op === 'resume' || obj.op === 'unsub') quotesTag = '';  // ask in full
      return running;
    },
    restart() { quotesTag = helloTag = ''; },
    reconnectNow() { if (running) retry.now(); },
    status() {
      return {open, connecting: running && !open, retryAt: retry.at, failures: retry.failures, connects, lastFrameAt};
    },
  };
}

/**
 * WebSocket first, then SSE, then polling, by itself; back to the WebSocket when it works again.
 * `position()` -> {symbols: '*' | [..], epoch, seq, resumable}: where the session stands;
 * `retryWsMs`: how often to try the WebSocket again while on a fallback.
 */
export function createSwitchingTransport(hooks, position, {retryWsMs = RETRY_WS_MS} = {}) {
  const kinds = ['WebSocket', 'SSE', 'polling'];
  let level = 0;
  let current = null;
  let silentTries = 0;   // attempts in a row on this level that brought no hello
  let helloTimer = 0;
  let probeTimer = 0;

  function wrap(levelOf) {
    return {
      opened() {
        if (levelOf !== level) return;
        clearTimeout(helloTimer);
        helloTimer = setTimeout(() => giveUp('no hello'), HELLO_TIMEOUT_MS);
        hooks.opened();
      },
      message(msg, bytes) {
        if (levelOf !== level) return;
        if (msg && msg.t === 'hello') {
          clearTimeout(helloTimer);
          silentTries = 0;
        }
        hooks.message(msg, bytes);
      },
      closed(info) {
        if (levelOf !== level) return;
        clearTimeout(helloTimer);
        silentTries += 1;
        hooks.closed(info);
        if (silentTries >= FAILS_BEFORE_FALLBACK && level < kinds.length - 1) fallBack();
      },
      changed() { if (levelOf === level) hooks.changed(); },
    };
  }

  function make(at) {
    const h = wrap(at);
    if (at === 0) return createWebSocketTransport(h);
    if (at === 1) return createSseTransport(h, position);
    return createPollingTransport(h, position);
  }

  function giveUp(why) {
    console.info(`ticker: ${kinds[level]}: ${why}`);
    silentTries += 1;
    if (silentTries >= FAILS_BEFORE_FALLBACK && level < kinds.length - 1) {
      fallBack();
    } else {
      current.restart(why);
    }
  }

  function use(at) {
    if (current) (current.stop || current.close || (() => {}))();
    level = at;
    silentTries = 0;
    current = make(at);
    current.start();
    hooks.changed();
  }

  function fallBack() {
    console.info(`ticker: ${kinds[level]} does not get through; falling back to ${kinds[level + 1]}`);
    use(level + 1);
    scheduleProbe();
  }

  /** On a fallback, try a WebSocket now and then; the first that says hello takes over. */
  function scheduleProbe() {
    clearTimeout(probeTimer);
    probeTimer = setTimeout(probe, retryWsMs);
  }

  function probe() {
    if (level === 0) return;
    let socket;
    try { socket = new WebSocket(socketUrl()); } catch { scheduleProbe(); return; }
    const timer = setTimeout(() => socket.close(), HELLO_TIMEOUT_MS);
    socket.onmessage = (event) => {
      clearTimeout(timer);
      socket.onclose = null;
      socket.close(1000, 'probe');
      if (typeof event.data === 'string' && event.data.startsWith('{"t":"hello"')) {
        console.info('ticker: the WebSocket gets through again');
        hooks.closed({code: 0, reason: 'moving back to the WebSocket'});
        use(0);
      } else {
        scheduleProbe();
      }
    };
    socket.onclose = () => { clearTimeout(timer); scheduleProbe(); };
    socket.onerror = () => {};
  }

  return {
    get name() { return current ? current.name : kinds[level]; },
    start() { use(0); },
    send(obj) { return current.send(obj); },
    restart(why) { current.restart(why); },
    reconnectNow() { current.reconnectNow(); },
    status() { return current.status(); },
  };
}
