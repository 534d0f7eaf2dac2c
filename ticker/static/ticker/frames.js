/* One DOM write per animation frame: messages mark rows dirty, and the next frame writes the rows
 * that changed, their flashes, and whatever else is due (`hooks.after`: status, sparklines) in
 * the same frame, so that the clock and the sparklines do not cost frames of their own. Rows off
 * screen are written too (their text stays current for a screen reader), but `content-visibility:
 * auto` spares them style, layout and paint. A hidden tab writes nothing until it is shown again.
 */
'use strict';

import {SECONDARY_MS} from './rows.js';

/**
 * @param hooks {render(row, now, all) -> deferred, flash(row, direction, now), fade(now), after(now)}
 */
export function createFrames(hooks) {
  const dirty = new Set();
  /** Rows whose high, low or volume cells wait for their once-a-second refresh. */
  const secondaryBehind = new Set();
  let frameRequested = false;
  let catchingUp = false;   // the first frame after the tab comes back: no flashes for old news
  let lastFlushAt = 0;
  let flushes = 0;          // animation frames that wrote rows
  let pendingTimer = 0;

  function request() {
    if (frameRequested || document.hidden) return;
    frameRequested = true;
    requestAnimationFrame(flush);
  }

  function markDirty(row, direction) {
    if (direction) row.dir = direction;
    dirty.add(row);
    request();
  }

  function flush(now) {
    frameRequested = false;
    if (document.hidden) return;
    lastFlushAt = now;
    if (dirty.size) flushes += 1;
    for (const row of dirty) {
      if (hooks.render(row, now, catchingUp)) secondaryBehind.add(row);
      else secondaryBehind.delete(row);
      if (!catchingUp) hooks.flash(row, row.dir, now);
      row.dir = 0;
    }
    dirty.clear();
    catchingUp = false;
    hooks.fade(now);
    hooks.after(now);
    if (secondaryBehind.size && !pendingTimer) pendingTimer = setTimeout(flushPending, SECONDARY_MS);
  }

  /** Nothing new arrived, but high, low or volume cells are due: come back for them. */
  function flushPending() {
    pendingTimer = 0;
    const now = performance.now();
    for (const row of secondaryBehind) {
      if (now - row.secondaryAt >= SECONDARY_MS) {
        secondaryBehind.delete(row);
        dirty.add(row);
      }
    }
    request();
  }

  return {
    request,
    markDirty,
    /** The row is gone: nothing more to write for it. */
    forget(row) {
      dirty.delete(row);
      secondaryBehind.delete(row);
    },
    /** The tab is back: the next frame writes every cell and flashes nothing. */
    catchUp() { catchingUp = true; },
    get lastFlushAt() { return lastFlushAt; },
    get flushes() { return flushes; },
  };
}
