/* The flash: a brief green/red glow on a row's last price when it moves.
 *
 * It is the opacity of an overlay that has a compositor layer of its own (`will-change:
 * opacity`), so changing it repaints nothing. It fades in steps, one per frame the board draws
 * anyway (`fade`, at the rate of the quotes), not as a Web Animation: in Chromium a running
 * animation, even one on the compositor, brings the main thread a frame at every vsync (60 a
 * second: measured in docs/PERFORMANCE.md), and on a busy board some flash is always running.
 * Rows off screen do not flash: nobody sees them.
 */
'use strict';

const FLASH_MS = 450;
const FADE_STEP_MS = 150;            // a fade step when no quotes bring a frame sooner

/** @param requestFrame() asks for a frame, in which `fade` runs */
export function createFlashes(requestFrame) {
  const reduceMotion = window.matchMedia('(prefers-reduced-motion: reduce)');
  const fading = new Map();  // row -> performance.now() of its flash
  let fadeTimer = 0;

  function flash(row, direction, now) {
    if (reduceMotion.matches || !direction || row.paused || !row.onScreen) return;
    const el = row.cells.flash;
    const cls = direction > 0 ? 'fl up' : 'fl down';
    if (el.className !== cls) el.className = cls;
    el.style.opacity = '1';
    fading.set(row, now);
  }

  /** The next step of every glow; the last step hides it. */
  function fade(now) {
    for (const [row, start] of fading) {
      const left = 1 - (now - start) / FLASH_MS;
      if (left <= 0.05) {
        row.cells.flash.style.opacity = '0';
        fading.delete(row);
      } else if (now > start) {
        row.cells.flash.style.opacity = left.toFixed(2);
      }
    }
    // Quotes bring a frame every 100 ms or so; only when they stop does the fade ask for its own.
    clearTimeout(fadeTimer);
    fadeTimer = fading.size ? setTimeout(requestFrame, FADE_STEP_MS) : 0;
  }

  /** No glow on this row now (paused, halted). */
  function stop(row) {
    fading.delete(row);
    row.cells.flash.style.opacity = '0';
  }

  return {flash, fade, stop};
}
