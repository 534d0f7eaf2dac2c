/* The selected row: the one the chart shows, remembered across visits. Rows are one tab stop (the
 * selected row); arrows move between rows, Enter or Space select, a click selects. The chart's
 * watch button adds the selected symbol to the watchlist. */
'use strict';

const KEY_SELECTED = 'ticker.selected';

/**
 * @param els {tbody, chartWatch}
 * @param deps {rows: Map sym -> row, chart, watchlist}
 */
export function createSelection({tbody, chartWatch}, {rows, chart, watchlist}) {
  let selected = '';

  function focusableRow(row) {
    for (const other of rows.values()) if (other.tr.tabIndex === 0 && other !== row) other.tr.tabIndex = -1;
    row.tr.tabIndex = 0;
  }

  function select(sym, {focus = false} = {}) {
    const row = rows.get(sym);
    if (!row) return;
    const before = rows.get(selected);
    if (before) {
      before.tr.classList.remove('selected');
      before.tr.removeAttribute('aria-current');
    }
    selected = sym;
    row.tr.classList.add('selected');
    row.tr.setAttribute('aria-current', 'true');
    focusableRow(row);
    if (focus) row.tr.focus();
    try { localStorage.setItem(KEY_SELECTED, sym); } catch { /* private mode */ }
    renderWatchButton();
    if (chart.symbol !== sym) chart.select(sym, row.name, row.q);
  }

  /** The stored choice, else the first watchlist symbol shown, else the first row shown. */
  function selectDefault() {
    let stored = '';
    try { stored = localStorage.getItem(KEY_SELECTED) || ''; } catch { /* private mode */ }
    const visible = [...rows.values()].filter((r) => r.shown);
    const pick = [stored, ...watchlist.state.symbols].find((s) => rows.get(s)?.shown) || visible[0]?.sym;
    if (pick) select(pick);
  }

  function renderWatchButton() {
    const sym = selected;
    const on = watchlist.has(sym);
    chartWatch.hidden = !sym;
    chartWatch.setAttribute('aria-pressed', on ? 'true' : 'false');
    chartWatch.textContent = on ? '★ Watching' : '☆ Watch';
    chartWatch.title = on ? `${sym} is on the watchlist` : `Add ${sym} to the watchlist`;
  }

  chartWatch.addEventListener('click', () => {
    if (selected && !watchlist.has(selected)) watchlist.add(selected);
  });

  tbody.addEventListener('click', (event) => {
    const tr = event.target.closest('tr[data-symbol]');
    if (tr) select(tr.dataset.symbol, {focus: true});
  });

  tbody.addEventListener('keydown', (event) => {
    const tr = event.target.closest('tr[data-symbol]');
    if (!tr || event.target !== tr) return;
    const shown = [...tbody.children].filter((el) => el.dataset.symbol && !el.hidden);
    const i = shown.indexOf(tr);
    let next = null;
    switch (event.key) {
      case 'ArrowDown': next = shown[i + 1]; break;
      case 'ArrowUp': next = shown[i - 1]; break;
      case 'Home': next = shown[0]; break;
      case 'End': next = shown[shown.length - 1]; break;
      case 'PageDown': next = shown[Math.min(shown.length - 1, i + 10)]; break;
      case 'PageUp': next = shown[Math.max(0, i - 10)]; break;
      case 'Enter': case ' ': select(tr.dataset.symbol); break;
      default: return;
    }
    event.preventDefault();
    if (next) {
      focusableRow(rows.get(next.dataset.symbol));
      next.focus();
    }
  });

  return {
    select, selectDefault, renderWatchButton,
    get selected() { return selected; },
  };
}
