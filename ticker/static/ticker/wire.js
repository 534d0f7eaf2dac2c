/* The wire panel: what the live transport received (frames, bytes, rate), beside what the same
 * updates would have cost by polling this server at the same rate, from one real poll measured
 * by the page. */
'use strict';

import {fmtBytes, grouped, setText} from './format.js';

const RATE_WINDOW_MS = 5000;

/** @param wire the panel's elements; @param stats the session's counters (read-only) */
export function createWirePanel(wire, stats) {
  let measured = null;  // {request, response, body, url} bytes of one real /api/quotes/ poll

  /**
   * What one poll of this server costs, measured: the page polls `/api/quotes/` once for what it
   * shows and reads the answer's size from Resource Timing (`transferSize`: headers and body as
   * received), and asks `/api/request-bytes/` how many bytes of request headers it got from this
   * browser (a page cannot see its own request headers). Measured again when the subscription moves.
   */
  let pollToken = 0;
  async function measurePoll() {
    const token = ++pollToken;
    await new Promise((r) => setTimeout(r, 300));  // let a burst of watchlist edits settle
    if (token !== pollToken) return;
    const sub = stats.subscribed;
    const query = sub && sub !== '*' ? `?symbols=${sub.join(',')}` : '';
    if (sub && sub !== '*' && !sub.length) {
      measured = {request: 0, response: 0, url: ''};
      return;
    }
    const path = `/api/quotes/${query}`;
    const url = new URL(path, location.href).href;
    try {
      const [res, echo] = await Promise.all([
        fetch(url, {cache: 'no-store', credentials: 'same-origin'}),
        fetch('/api/request-bytes/', {cache: 'no-store', credentials: 'same-origin'}).then((r) => r.json()),
      ]);
      await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 0));  // the timing entry lands after the body
      const entry = performance.getEntriesByName(url).pop();
      performance.clearResourceTimings();
      if (!entry || !entry.transferSize || token !== pollToken) return;
      // The request line for the poll itself, then the headers this browser sends (measured).
      const requestLine = `GET ${path} HTTP/1.1\r\n`.length;
      measured = {request: requestLine + echo.header_bytes, response: entry.transferSize,
        body: entry.encodedBodySize, url: path};
    } catch (err) {
      console.info('ticker: could not measure a poll', err);
    }
  }

  // Bytes and frames per second over the last few seconds, from samples of the running totals.
  const rateSamples = [];
  function renderWire(now) {
    rateSamples.push([now, stats.bytes, stats.frames]);
    while (rateSamples.length > 2 && now - rateSamples[0][0] > RATE_WINDOW_MS) rateSamples.shift();
    const [t0, b0, f0] = rateSamples[0];
    const seconds = (now - t0) / 1000;
    const rate = seconds > 0 ? (stats.bytes - b0) / seconds : 0;
    const fps = seconds > 0 ? (stats.frames - f0) / seconds : 0;
    setText(wire.bytes, fmtBytes(stats.bytes));
    wire.bytes.title = `${grouped.format(stats.bytes)} bytes`;
    setText(wire.frames, grouped.format(stats.frames));
    setText(wire.rate, `${fmtBytes(rate)}/s`);
    setText(wire.avg, stats.frames ? fmtBytes(stats.bytes / stats.frames) : '–');
    setText(wire.seq, grouped.format(stats.seq));
    setText(wire.epoch, stats.epoch || '–');
    setText(wire.node, stats.node || '–');
    setText(wire.transport, stats.transport);
    const poll = measured;
    if (!poll) return;
    if (!poll.response) {
      setText(wire.pollOne, 'nothing subscribed');
      setText(wire.poll, '–');
      return;
    }
    const each = poll.request + poll.response;
    setText(wire.pollOne, `${fmtBytes(poll.request)} up + ${fmtBytes(poll.response)} down`);
    wire.pollOne.title = `GET ${poll.url}: request line and headers ${poll.request} B (measured by this server); ` +
      `response headers and body ${poll.response} B (body ${poll.body} B), from Resource Timing`;
    const pollRate = fps * each;
    const times = rate > 0 ? ` · ${(pollRate / rate).toFixed(1)}×` : '';
    setText(wire.poll, `${fmtBytes(pollRate)}/s at ${fps.toFixed(1)} polls/s${times}`);
  }

  return {measurePoll, render: renderWire, get poll() { return measured; }};
}
