/* What the page says about its own state: the connection indicator (and what a screen reader
 * hears of it), the feed-down banner, the age of the last update, server notices and the
 * market breadth. It reads the session (session.js) and the rows, and writes only these few
 * elements and its own `state` and `feedDown`. The stale marks are rules.js's. */
'use strict';

import {fmtSeconds, setText} from './format.js';
import {FEED_DOWN_AFTER_MS, STALE_AFTER_MS} from './rules.js';

const OFFLINE_AFTER_FAILURES = 6;           // failed attempts in a row (~10 s) before we say "offline"
const NOTICE_MS = 6000;

/**
 * @param els {table, conn, connLabel, announce, banner, age, notice, breadth: {up, down, count}}
 * @param deps {session, rows: Map sym -> row}
 */
export function createStatus(els, {session, rows}) {
  const {table, conn, connLabel, announce, banner: bannerEl, age: ageEl, notice: noticeEl, breadth} = els;
  const {stats, link} = session;

  let announced = '';
  let shownState = 'reconnecting';  // what the indicator says: live, stale, reconnecting or offline
  let everLive = false;
  let feedIsDown = false;           // the banner says "feed down"

  function setState(state, label, spoken) {
    shownState = state;
    if (conn.dataset.state !== state) conn.dataset.state = state;
    setText(connLabel, label);
    // Screen readers hear the state when it changes, not every tick of a countdown.
    if (spoken !== announced) {
      announced = spoken;
      announce.textContent = spoken;
    }
    // Once we have been connected (or failed to), quotes shown while not live may be old: grey
    // them so nobody reads them as fresh. The first paint is fresh from the server.
    table.classList.toggle('stale', state !== 'live' && (everLive || session.status().failures > 0));
  }

  /** True when the link answers but no quote came for FEED_DOWN_AFTER_MS while something we
   *  watch should trade: the feed stopped, and the prices shown are aging. */
  function feedDown(now) {
    if (stats.market.state === 'halted' || !link.synced) return false;
    const watching = stats.subscribed === '*' ? [...rows.values()] :
      (stats.subscribed || []).map((s) => rows.get(s)).filter(Boolean);
    const quiet = now - Math.max(stats.lastQuoteAt, link.openedAt);
    return watching.some((row) => !row.paused) && quiet > FEED_DOWN_AFTER_MS;
  }

  /** Derive the indicator from the transport, the last quote and frame, and the retry timer.
   *  Live means fresh: a link that answers pings while the feed is silent is stale too. */
  function refreshState() {
    const now = performance.now();
    const t = session.status();
    if (t.open) {
      const quiet = now - stats.lastFrameAt;
      if (!link.synced) setState('reconnecting', 'syncing…', 'Connecting to the quote stream');
      else if (quiet > STALE_AFTER_MS) setState('stale', `stale · ${fmtSeconds(quiet)}`, 'Stale: no data is arriving');
      else if (feedDown(now)) setState('stale', 'stale · feed down', 'Stale: the feed has stopped');
      else {
        everLive = true;
        const name = session.transportName;
        const over = {WebSocket: 'live', SSE: 'live · on SSE', polling: 'live · polling'}[name] || 'live';
        setState('live', over, `Live over ${name}`);
      }
      return;
    }
    const offline = navigator.onLine === false || t.failures >= OFFLINE_AFTER_FAILURES;
    const state = offline ? 'offline' : 'reconnecting';
    if (t.connecting || !t.retryAt) {
      setState(state, everLive || t.failures ? `reconnecting · attempt ${t.failures + 1}` : 'connecting…',
        offline ? 'Offline, reconnecting' : 'Reconnecting');
    } else {
      const wait = Math.max(0, t.retryAt - now);
      const label = `reconnecting in ${Math.ceil(wait / 1000)} s`;
      setState(state, offline ? `offline · ${label}` : label, offline ? 'Offline, reconnecting' : 'Reconnecting');
    }
  }

  /** Connected, quotes flowing to us before, and now none for 5 s: the feed behind the server is down. */
  function renderBanner(now) {
    const t = session.status();
    const halted = stats.market.state === 'halted';
    const quiet = now - Math.max(stats.lastQuoteAt, link.openedAt);
    const down = t.open && feedDown(now) && now - stats.lastFrameAt < STALE_AFTER_MS;
    feedIsDown = down;
    if (halted) {
      setText(bannerEl, `Market halted${stats.market.reason ? `: ${stats.market.reason}` : ''}. No prices move until it reopens.`);
    } else if (down) {
      setText(bannerEl, `Feed down: no price update for ${fmtSeconds(quiet)}. Prices shown may be old.`);
    }
    const shown = halted || down;
    if (bannerEl.hidden === shown) bannerEl.hidden = !shown;
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
  /** A server's `err`, shown for a while. */
  function showNotice(msg) {
    console.warn('ticker: server error', msg);
    noticeEl.textContent = `${msg.code}: ${msg.msg}`;
    noticeEl.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeEl.hidden = true; }, NOTICE_MS);
  }

  function renderBreadth() {
    let up = 0;
    let down = 0;
    let shown = 0;
    for (const row of rows.values()) {
      if (!row.shown) continue;
      shown += 1;
      if (row.sign > 0) up += 1;
      else if (row.sign < 0) down += 1;
    }
    setText(breadth.up, `▲ ${up}`);
    setText(breadth.down, `▼ ${down}`);
    setText(breadth.count, shown === rows.size ? `${rows.size} symbols` : `${shown} of ${rows.size} symbols`);
  }

  return {
    refreshState, renderBanner, renderAge, showNotice, renderBreadth,
    get state() { return shownState; },
    get feedDown() { return feedIsDown; },
  };
}
