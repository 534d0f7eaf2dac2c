/* Number and text formats shared by the board's modules. */
'use strict';

export const grouped = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});

export function decimalsFor(tick) {
  if (!(tick > 0)) return 2;
  return Math.min(6, Math.max(2, Math.ceil(-Math.log10(tick) - 1e-9)));
}

export function fmtPrice(value, decimals) {
  return Number.isFinite(value) ? value.toFixed(decimals) : '–';
}

/** "+1.25", "-0.40", "0.00": the sign comes from the rounded text, so +0.00 never shows. */
export function fmtSigned(value, decimals) {
  if (!Number.isFinite(value)) return '–';
  const text = Math.abs(value).toFixed(decimals);
  if (Number(text) === 0) return text;
  return (value > 0 ? '+' : '-') + text;
}

export function fmtVolume(v) {
  if (!Number.isFinite(v)) return '–';
  if (v < 100000) return grouped.format(v);
  if (v < 1e6) return (v / 1e3).toFixed(1) + 'K';
  if (v < 1e9) return (v / 1e6).toFixed(2) + 'M';
  return (v / 1e9).toFixed(2) + 'B';
}

export function fmtBytes(n) {
  if (n < 1024) return Math.round(n) + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
  return (n / (1024 * 1024)).toFixed(2) + ' MB';
}

export function fmtSeconds(ms) {
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + ' s';
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  return Math.round(s / 3600) + ' h';
}

export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
