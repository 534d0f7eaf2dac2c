/* The watchlist: an ordered list of tickers, kept in localStorage and, for a signed-in user, on
 * the server (GET/PUT /api/watchlist/). The panel adds by typing (a <datalist> completes over the
 * symbols of `hello`), removes, and reorders by keyboard (Alt+↑/↓ or the arrow buttons) and by
 * dragging. The board is told of every change through `onChange` and decides what to subscribe to.
 */
'use strict';

const KEY_LIST = 'ticker.watchlist';
const KEY_ONLY = 'ticker.watchlist.only';
const MAX = 100;
const SAVE_DELAY_MS = 300;

function readLocal() {
  try {
    const list = JSON.parse(localStorage.getItem(KEY_LIST) || '[]');
    return Array.isArray(list) ? list.filter((s) => typeof s === 'string').slice(0, MAX) : [];
  } catch {
    return [];
  }
}

function writeLocal(symbols, only) {
  try {
    localStorage.setItem(KEY_LIST, JSON.stringify(symbols));
    localStorage.setItem(KEY_ONLY, only ? '1' : '0');
  } catch {
    // private mode or full: the list still works for this page
  }
}

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

/**
 * @param els {form, input, options, list, only, where, status}
 * @param hooks {onChange(symbols, only), onSelect(sym), names() -> Map sym -> name}
 */
export function createWatchlist(els, hooks) {
  const state = {
    symbols: readLocal(),
    only: localStorage.getItem(KEY_ONLY) === '1',
    user: '',          // signed in: the list is saved on the server too
  };
  let saveTimer = 0;
  let dragged = '';

  function say(text) {
    els.status.textContent = text;
  }

  function changed({save = true} = {}) {
    writeLocal(state.symbols, state.only);
    if (save && state.user) {
      clearTimeout(saveTimer);
      saveTimer = setTimeout(saveRemote, SAVE_DELAY_MS);
    }
    render();
    hooks.onChange(state.symbols.slice(), state.only);
  }

  async function saveRemote() {
    try {
      const res = await fetch('/api/watchlist/', {
        method: 'PUT',
        credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrfToken()},
        body: JSON.stringify({symbols: state.symbols}),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        say(`Not saved on the server: ${body.msg || 'HTTP ' + res.status}`);
      }
    } catch (err) {
      say(`Not saved on the server: ${err.message}`);
    }
  }

  /** Signed in (the page names the user)? Then the server's list wins; a first sign-in uploads
   *  the browser's list. Anonymous, the page does not ask (a 401 would be logged as an error in
   *  the console) and the list stays in this browser. */
  async function loadRemote(user) {
    if (!user) return;
    let res;
    try {
      res = await fetch('/api/watchlist/', {credentials: 'same-origin', cache: 'no-store'});
    } catch {
      return;
    }
    if (res.status !== 200) {  // 401: the session ended since the page was served
      els.where.textContent = 'only in this browser';
      return;
    }
    const body = await res.json();
    state.user = body.user || user;
    els.where.textContent = `kept on the server for ${state.user}`;
    els.where.dataset.source = 'server';  // the list shown is the server's from now on
    if (body.symbols.length || !state.symbols.length) {
      const same = body.symbols.join() === state.symbols.join();
      state.symbols = body.symbols.slice(0, MAX);
      if (!same) changed({save: false});
    } else {
      saveRemote();
    }
  }

  function normalise(text) {
    return text.trim().toUpperCase();
  }

  function add(sym) {
    const names = hooks.names();
    if (!sym) return;
    if (!names.has(sym)) {
      say(`${sym}: not a listed symbol`);
      return;
    }
    if (state.symbols.includes(sym)) {
      say(`${sym} is already on the watchlist`);
      return;
    }
    if (state.symbols.length >= MAX) {
      say(`At most ${MAX} symbols`);
      return;
    }
    state.symbols.push(sym);
    say(`${sym} added`);
    changed();
  }

  function remove(sym) {
    const i = state.symbols.indexOf(sym);
    if (i < 0) return;
    state.symbols.splice(i, 1);
    say(`${sym} removed`);
    changed();
    const next = els.list.children[Math.min(i, els.list.children.length - 1)];
    (next || els.input).focus();
  }

  function move(sym, to) {
    const from = state.symbols.indexOf(sym);
    if (from < 0 || to < 0 || to >= state.symbols.length || to === from) return;
    state.symbols.splice(from, 1);
    state.symbols.splice(to, 0, sym);
    say(`${sym} moved to position ${to + 1} of ${state.symbols.length}`);
    changed();
    els.list.querySelector(`li[data-symbol="${CSS.escape(sym)}"]`)?.focus();
  }

  function button(cls, text, label) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = cls;
    b.textContent = text;
    b.setAttribute('aria-label', label);
    b.title = label;
    return b;
  }

  function render() {
    const names = hooks.names();
    els.list.replaceChildren();
    state.symbols.forEach((sym, i) => {
      const li = document.createElement('li');
      li.dataset.symbol = sym;
      li.tabIndex = 0;
      li.draggable = true;
      li.setAttribute('aria-label', `${sym}, ${i + 1} of ${state.symbols.length}`);
      const grip = document.createElement('span');
      grip.className = 'wl-grip';
      grip.setAttribute('aria-hidden', 'true');
      grip.textContent = '⠿';
      const tkr = document.createElement('span');
      tkr.className = 'wl-sym';
      tkr.textContent = sym;
      const name = document.createElement('span');
      name.className = 'wl-name';
      name.textContent = names.get(sym) || '';
      li.append(grip, tkr, name,
        button('wl-up', '↑', `Move ${sym} up`), button('wl-down', '↓', `Move ${sym} down`),
        button('wl-remove', '×', `Remove ${sym} from the watchlist`));
      els.list.append(li);
    });
    els.list.dataset.empty = state.symbols.length ? '' : 'yes';
    els.only.checked = state.only;
  }

  /** The datalist: every listed symbol with its name (the browser filters it as one types). */
  function setSymbols(list) {
    const frag = document.createDocumentFragment();
    for (const s of list) {
      const opt = document.createElement('option');
      opt.value = s.s;
      opt.label = s.name || s.s;
      frag.append(opt);
    }
    els.options.replaceChildren(frag);
    render();
  }

  els.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const sym = normalise(els.input.value);
    add(sym);
    if (state.symbols.includes(sym)) els.input.value = '';
  });

  els.only.addEventListener('change', () => {
    state.only = els.only.checked;
    say(state.only ? 'Showing the watchlist only' : 'Showing every symbol');
    changed({save: false});
  });

  els.list.addEventListener('click', (event) => {
    const li = event.target.closest('li[data-symbol]');
    if (!li) return;
    const sym = li.dataset.symbol;
    const i = state.symbols.indexOf(sym);
    if (event.target.closest('.wl-remove')) remove(sym);
    else if (event.target.closest('.wl-up')) move(sym, i - 1);
    else if (event.target.closest('.wl-down')) move(sym, i + 1);
    else hooks.onSelect(sym);
  });

  els.list.addEventListener('keydown', (event) => {
    const li = event.target.closest('li[data-symbol]');
    if (!li || event.target !== li) return;
    const sym = li.dataset.symbol;
    const i = state.symbols.indexOf(sym);
    if (event.altKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
      move(sym, i + (event.key === 'ArrowUp' ? -1 : 1));
    } else if (event.key === 'ArrowUp' || event.key === 'ArrowDown') {
      const next = event.key === 'ArrowUp' ? li.previousElementSibling : li.nextElementSibling;
      next?.focus();
    } else if (event.key === 'Delete' || event.key === 'Backspace') {
      remove(sym);
    } else if (event.key === 'Enter' || event.key === ' ') {
      hooks.onSelect(sym);
    } else {
      return;
    }
    event.preventDefault();
  });

  // Dragging: the item dropped on another goes before it (after it when dropped on its lower half).
  els.list.addEventListener('dragstart', (event) => {
    const li = event.target.closest('li[data-symbol]');
    if (!li) return;
    dragged = li.dataset.symbol;
    event.dataTransfer.effectAllowed = 'move';
    event.dataTransfer.setData('text/plain', dragged);
    li.classList.add('dragging');
  });
  els.list.addEventListener('dragend', (event) => {
    event.target.closest?.('li')?.classList.remove('dragging');
    dragged = '';
  });
  els.list.addEventListener('dragover', (event) => {
    if (!dragged) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'move';
  });
  els.list.addEventListener('drop', (event) => {
    event.preventDefault();
    const sym = dragged || event.dataTransfer.getData('text/plain');
    const target = event.target.closest('li[data-symbol]');
    if (!sym || !target || target.dataset.symbol === sym) return;
    const box = target.getBoundingClientRect();  // a user's drop, not the hot path
    const after = event.clientY > box.top + box.height / 2;
    const without = state.symbols.filter((s) => s !== sym);
    let to = without.indexOf(target.dataset.symbol) + (after ? 1 : 0);
    to = Math.max(0, Math.min(to, without.length));
    move(sym, to);
  });

  render();
  return {
    state,
    setSymbols,
    loadRemote,
    add,
    has: (sym) => state.symbols.includes(sym),
  };
}
