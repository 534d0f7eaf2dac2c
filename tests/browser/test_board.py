"""The board page in headless Chromium against a real daphne (embedded mode, 42 symbols).

Playwright's sync API drives Debian's Chromium (never a downloaded browser). The tests are
plain sync functions: the sync API must not run inside an asyncio loop.

The suite saves screenshots (1280 and 390 px wide, light and dark) under ``var/screenshots/``
(``TICKER_SCREENSHOT_DIR`` elsewhere); ``TICKER_SCREENSHOT=1`` also writes ``docs/screenshot.png``
(1280×800, dark) for the README.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

from tests.helpers.browser import PHONE, SCREENSHOT_DIR, STATE_IS, VIEWPORT, WAIT_MS, Board  # noqa: E402

SEEDED_SYMBOLS = 42
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot.png"

LAST_PRICES = (
    "() => Object.fromEntries([...document.querySelectorAll('tr[data-symbol]')]"
    ".map((tr) => [tr.dataset.symbol, tr.querySelector('td.last').textContent]))"
)
SHOWN_ROWS = (
    "() => [...document.querySelectorAll('#board tbody tr[data-symbol]:not([hidden])')].map((tr) => tr.dataset.symbol)"
)
WATCHLIST = "() => [...document.querySelectorAll('#wl-list li')].map((li) => li.dataset.symbol)"


@pytest.fixture
def board(context, embedded_site) -> Iterator[Board]:
    board = Board(context.new_page(), embedded_site.url + "/")
    yield board
    assert board.errors == [], "the page logged errors"


def test_first_paint_is_server_rendered(browser, embedded_site):
    """Without JavaScript the table is already full: every symbol, with prices."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(embedded_site.url + "/")
        rows = page.locator("#board tbody tr[data-symbol]")
        assert rows.count() == SEEDED_SYMBOLS
        aapl = page.locator('tr[data-symbol="AAPL"]')
        assert aapl.locator(".name").inner_text() == "Apple Inc."
        assert re.fullmatch(r"\d+\.\d\d", aapl.locator("td.last").inner_text())
        assert re.fullmatch(r"[+-]?\d+\.\d\d%", aapl.locator("td.pct").inner_text())
        assert page.locator("#conn").get_attribute("data-state") == "reconnecting"
    finally:
        context.close()


def test_goes_live_with_a_fresh_subscription(board):
    board.wait_state("live")
    assert "stale" not in (board.page.locator("#board").get_attribute("class") or "")
    assert board.page.locator("#board tbody tr[data-symbol]").count() == SEEDED_SYMBOLS
    # One socket, naming the protocol version; a first connection subscribes to the whole
    # board, with nothing to resume yet.
    assert [url.split("/", 3)[3] for url in board.sockets] == ["ws/quotes/?v=1"]
    assert [frame for frame in board.sent if '"op":"sub"' in frame] == ['{"op":"sub","symbols":"*"}']
    assert board.state("epoch")
    board.page.wait_for_function("() => /^updated [\\d.]+ s ago$/.test(document.getElementById('age').textContent)")


def test_last_prices_change(board):
    board.wait_state("live")
    # Read the prices and the seq they belong to in one go: a frame may land between two calls.
    before, seq = board.page.evaluate(f"() => [({LAST_PRICES})(), window.tickerState.seq]")
    board.page.wait_for_function(
        f"(before) => Object.entries(({LAST_PRICES})()).some(([sym, text]) => before[sym] !== text)",
        arg=before,
    )
    assert board.state("seq") > seq
    # Changes are coloured by sign against the previous close.
    board.page.wait_for_selector("#board td.pct.up, #board td.pct.down")


def test_page_sends_no_acks_when_the_server_asks_for_none(board):
    """On daphne's fast path the server sees each connection's buffer itself (hello: ack_ms 0)."""
    board.wait_state("live")
    board.page.wait_for_function("() => window.tickerState.seq > 5")
    assert not [f for f in board.sent if '"op":"ack"' in f]


def test_page_acknowledges_when_and_only_when_the_server_asks(context, other_embedded_site):
    """uvicorn's hello asks for an ack every 2 s: the page sends the seq it applied, on a timer.
    daphne (its link reports the buffer, fast path or not) asks for none: the page sends none."""
    asks = "uvicorn" in other_embedded_site.procs["web"].argv
    board = Board(context.new_page(), other_embedded_site.url + "/")
    try:
        board.wait_state("live")
        if asks:
            board.page.wait_for_function("() => window.tickerState.seq > 0", timeout=10_000)
            deadline = time.monotonic() + 10
            while len([f for f in board.sent if '"op":"ack"' in f]) < 2:
                assert time.monotonic() < deadline, "the page did not ack twice in 10 s"
                board.page.wait_for_timeout(100)
            acks = [json.loads(f) for f in board.sent if '"op":"ack"' in f]
            assert acks == sorted(acks, key=lambda a: a["seq"]) and acks[-1]["seq"] <= board.state("seq")
        else:
            start = board.state("frames")
            board.page.wait_for_function(f"() => window.tickerState.frames > {start + 30}", timeout=15_000)
            assert [f for f in board.sent if '"op":"ack"' in f] == []
        assert board.errors == []
    finally:
        board.page.close()


def test_wire_panel_counts_bytes_and_frames(board):
    board.wait_state("live")
    bytes_before, frames_before = board.state("bytes"), board.state("frames")
    assert bytes_before > 0
    board.page.wait_for_function(
        "([b, f]) => window.tickerState.bytes > b && window.tickerState.frames > f",
        arg=[bytes_before, frames_before],
    )
    board.page.wait_for_function("() => document.getElementById('wire-bytes').textContent !== '0 B'")
    assert int(board.page.locator("#wire-frames").inner_text().replace(",", "")) > 0


def test_stale_then_reconnect_and_resume(context, embedded_site):
    """A silent link turns the board stale; a dropped one greys it, then the page resumes."""
    routes: list[sync_api.WebSocketRoute] = []
    muted = {"on": False}

    def through(ws: sync_api.WebSocketRoute) -> None:
        # Pass frames both ways, except server frames while muted; keep a handle to cut it.
        server = ws.connect_to_server()
        server.on_message(lambda message: None if muted["on"] else ws.send(message))
        routes.append(ws)

    context.route_web_socket(re.compile(r"/ws/quotes/(\?.*)?$"), through)
    board = Board(context.new_page(), embedded_site.url + "/")
    board.wait_state("live")
    epoch, connects = board.state("epoch"), board.state("connects")

    muted["on"] = True  # the socket stays open, but nothing arrives (not even pongs)
    board.page.wait_for_function(STATE_IS, arg="stale", timeout=10_000)
    assert "stale" in board.page.locator("#board").get_attribute("class")
    muted["on"] = False
    board.wait_state("live")
    assert board.state("connects") == connects

    routes[-1].close(code=1012, reason="test restart")
    board.page.wait_for_function("() => document.getElementById('board').classList.contains('stale')")
    assert board.page.locator("#conn").get_attribute("data-state") in ("reconnecting", "offline")
    board.wait_state("live")
    assert board.state("connects") == connects + 1
    assert "stale" not in board.page.locator("#board").get_attribute("class")
    resumes = [frame for frame in board.sent if '"op":"resume"' in frame]
    assert len(resumes) == 1
    assert f'"epoch":"{epoch}"' in resumes[0]
    assert board.errors == []


def _admin(context, site) -> sync_api.Page:
    page = context.new_page()
    page.goto(site.url + "/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "test-password")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page


def _set_active(admin: sync_api.Page, site, ticker: str, active: bool) -> None:
    admin.goto(f"{site.url}/admin/ticker/symbol/?q={ticker}")
    admin.check(f"tr:has(th a:text-is('{ticker}')) input[name=_selected_action]")
    admin.select_option("select[name=action]", "resume" if active else "pause")
    admin.click("button[name=index]")
    admin.wait_for_selector(".messagelist .success")


def test_admin_changes_reach_an_open_page(board, context, embedded_site):
    """Pause, add and delete symbols in the admin: the open board follows without a reload."""
    board.wait_state("live")
    admin = _admin(context, embedded_site)
    aapl = board.page.locator('tr[data-symbol="AAPL"]')

    _set_active(admin, embedded_site, "AAPL", False)
    board.page.wait_for_selector('tr[data-symbol="AAPL"].paused')
    assert aapl.locator(".tag").is_visible()
    _set_active(admin, embedded_site, "AAPL", True)
    board.page.wait_for_selector('tr[data-symbol="AAPL"]:not(.paused)')
    assert not aapl.locator(".tag").is_visible()

    admin.goto(embedded_site.url + "/admin/ticker/symbol/add/")
    admin.fill("#id_ticker", "ZZTEST")
    admin.fill("#id_name", "Test Holdings")
    admin.fill("#id_prev_close", "10.00")
    admin.click("input[name=_save]")
    change_url = admin.get_attribute(".messagelist .success a", "href")  # …/symbol/<pk>/change/
    new_row = board.page.locator('tr[data-symbol="ZZTEST"]')
    new_row.wait_for()
    assert new_row.locator(".name").inner_text() == "Test Holdings"
    # Added in ticker order, after the last seeded symbol, and it starts trading.
    assert board.page.evaluate("() => document.querySelector('#board tbody tr:last-child').dataset.symbol") == "ZZTEST"
    board.page.wait_for_function(
        "() => /^\\d+\\.\\d\\d$/.test(document.querySelector('tr[data-symbol=\"ZZTEST\"] td.last').textContent)"
    )

    admin.goto(urljoin(admin.url, change_url.replace("/change/", "/delete/")))
    admin.click("input[type=submit]")
    admin.wait_for_selector(".messagelist .success")
    new_row.wait_for(state="detached")
    assert board.page.locator("#board tbody tr[data-symbol]").count() == SEEDED_SYMBOLS


def test_a_market_halt_shows_its_reason_on_every_row_and_the_banner_until_reopened(board, context, embedded_site):
    board.wait_state("live")
    admin = _admin(context, embedded_site)
    admin.goto(embedded_site.url + "/admin/ticker/market/")  # the one row, made on first look
    admin.goto(embedded_site.url + "/admin/ticker/market/1/change/")
    admin.check("#id_halted")
    admin.fill("#id_reason", "Circuit breaker: index down 7 %")
    admin.click("input[name=_save]")
    board.page.wait_for_selector("#banner:not([hidden])")
    assert board.page.text_content("#banner").startswith("Market halted: Circuit breaker: index down 7 %")
    tags = board.page.evaluate("() => [...document.querySelectorAll('#board tbody tr .tag')].map((t) => t.hidden"
                               " ? '' : t.textContent)")
    assert set(tags) == {"halted"}
    admin.goto(embedded_site.url + "/admin/ticker/market/1/change/")
    admin.uncheck("#id_halted")
    admin.click("input[name=_save]")
    board.page.wait_for_selector("#banner", state="hidden")
    board.page.wait_for_function("() => ![...document.querySelectorAll('#board tbody tr .tag')].some((t) => !t.hidden)")


def test_a_selected_row_draws_candles_and_the_chart_extends_live(board):
    board.wait_state("live")
    # A first visit shows the first row's chart, with no placeholder.
    board.page.wait_for_function("() => window.tickerChart.symbol === 'AAPL' && window.tickerChart.bars() > 0")
    board.page.click('tr[data-symbol="MSFT"] th')
    board.page.wait_for_function("() => window.tickerChart.symbol === 'MSFT' && window.tickerChart.bars() > 0")
    assert board.page.locator("#chart-title").inner_text().startswith("MSFT")
    assert board.page.locator('tr[data-symbol="MSFT"]').get_attribute("aria-current") == "true"
    assert board.page.locator("#chart canvas").count() > 0
    last = board.page.evaluate("() => window.tickerChart.last()")
    # The q frames move the last candle (or open a new one at the minute).
    board.page.wait_for_function(
        "(b) => { const l = window.tickerChart.last(); return l.time !== b.time || l.close !== b.close; }",
        arg=last, timeout=20_000,
    )
    # The chart's last candle is the row's last price.
    board.page.wait_for_function(
        "() => Number(document.querySelector('tr[data-symbol=\"MSFT\"] td.last').textContent)"
        " === Number(window.tickerChart.last().close.toFixed(2))"
    )


def test_rows_are_reachable_and_selected_from_the_keyboard(board):
    board.wait_state("live")
    board.page.wait_for_function("() => window.tickerState.selected === 'AAPL'")
    # The selected row is the board's one tab stop, right after the header's sign-in link.
    board.page.keyboard.press("Tab")
    assert board.page.evaluate("() => document.activeElement.textContent") == "Sign in"
    board.page.keyboard.press("Tab")
    assert board.page.evaluate("() => document.activeElement.dataset.symbol") == "AAPL"
    board.page.keyboard.press("ArrowDown")
    board.page.keyboard.press("ArrowDown")
    assert board.page.evaluate("() => document.activeElement.dataset.symbol") == "AMD"
    assert board.state("selected") == "AAPL"  # moving is not selecting
    board.page.keyboard.press("Enter")
    board.page.wait_for_function("() => window.tickerChart.symbol === 'AMD'")
    assert board.page.locator('tr[data-symbol="AMD"]').get_attribute("tabindex") == "0"
    # The chart's watch button and the watchlist's controls come next in the tab order.
    reached = []
    for _ in range(6):
        board.page.keyboard.press("Tab")
        reached.append(board.page.evaluate("() => document.activeElement.id"))
    assert "chart-watch" in reached and "wl-input" in reached and "wl-only" in reached, reached
    # The watch button adds the selected symbol to the watchlist.
    board.page.focus("#chart-watch")
    board.page.keyboard.press("Enter")
    board.page.wait_for_selector('#wl-list li[data-symbol="AMD"]')
    assert board.page.get_attribute("#chart-watch", "aria-pressed") == "true"


def test_the_watchlist_survives_a_reload_and_narrows_the_subscription(board):
    board.wait_state("live")
    for sym in ("MSFT", "NVDA", "KO"):
        board.add_to_watchlist(sym)
    assert board.page.evaluate(WATCHLIST) == ["MSFT", "NVDA", "KO"]
    # An unknown ticker is refused with a message.
    board.page.fill("#wl-input", "NOPE")
    board.page.press("#wl-input", "Enter")
    board.page.wait_for_function("() => /not a listed symbol/.test(document.getElementById('wl-status').textContent)")

    # Reorder by keyboard: KO up to the top.
    board.page.focus('#wl-list li[data-symbol="KO"]')
    board.page.keyboard.press("Alt+ArrowUp")
    board.page.keyboard.press("Alt+ArrowUp")
    assert board.page.evaluate(WATCHLIST) == ["KO", "MSFT", "NVDA"]
    # And by dragging: NVDA onto the top half of KO.
    source, target = (board.page.locator(f'#wl-list li[data-symbol="{s}"]') for s in ("NVDA", "KO"))
    target.scroll_into_view_if_needed()  # the list scrolls in its panel: KO's top half in sight
    board.page.evaluate("document.getElementById('wl-list').scrollTop = 0")
    a, b = source.bounding_box(), target.bounding_box()
    board.page.mouse.move(a["x"] + 20, a["y"] + a["height"] / 4)
    board.page.mouse.down()
    board.page.mouse.move(b["x"] + 20, b["y"] + b["height"] / 4, steps=5)  # its top half, clear of the edge
    board.page.mouse.up()
    board.page.wait_for_function(f"() => ({WATCHLIST})().join() === 'NVDA,KO,MSFT'")

    # The board alone: only the watchlist's rows, in its order, and only they on the wire.
    sent_before = len(board.sent)
    board.page.check("#wl-only")
    board.page.wait_for_function(f"() => ({SHOWN_ROWS})().join() === 'NVDA,KO,MSFT'")
    board.page.wait_for_function("(n) => window.tickerState.subscribed.length === 3", arg=3)
    narrowing = [json.loads(f) for f in board.sent[sent_before:]]
    assert {"op": "unsub", "symbols": "*"} in narrowing
    assert {"op": "sub", "symbols": ["NVDA", "KO", "MSFT"]} in narrowing
    assert board.page.locator("#breadth-count").inner_text() == f"3 of {SEEDED_SYMBOLS} symbols"

    # Removing a symbol unsubscribes from it.
    board.page.click('#wl-list li[data-symbol="KO"] .wl-remove')
    board.page.wait_for_function(f"() => ({SHOWN_ROWS})().join() === 'NVDA,MSFT'")
    board.page.wait_for_function("() => window.tickerState.subscribed.join() === 'NVDA,MSFT'")
    assert board.ops("unsub")[-1] == {"op": "unsub", "symbols": ["KO"]}

    # A reload keeps it all (localStorage), and the new connection asks for just those two.
    board.sent.clear()
    board.page.reload()
    board.wait_state("live")
    assert board.page.evaluate(WATCHLIST) == ["NVDA", "MSFT"]
    assert board.page.is_checked("#wl-only")
    assert board.page.evaluate(SHOWN_ROWS) == ["NVDA", "MSFT"]
    assert board.ops("sub") == [{"op": "sub", "symbols": ["NVDA", "MSFT"]}]
    # Only their quotes arrive; prices still move.
    seq = board.state("seq")
    board.page.wait_for_function("(s) => window.tickerState.seq > s", arg=seq)

    # Back to every symbol: one `sub "*"`, and every row again.
    board.page.uncheck("#wl-only")
    board.page.wait_for_function("() => window.tickerState.subscribed === '*'")
    assert board.ops("sub")[-1] == {"op": "sub", "symbols": "*"}
    assert len(board.page.evaluate(SHOWN_ROWS)) == SEEDED_SYMBOLS


def test_a_signed_in_users_watchlist_is_kept_on_the_server(browser, embedded_site):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    try:
        _admin(context, embedded_site).close()
        board = Board(context.new_page(), embedded_site.url + "/")
        board.wait_state("live")
        board.page.wait_for_selector("#wl-where[data-source=server]")  # the server's list, loaded
        assert board.page.inner_text("#wl-where") == "kept on the server for admin"
        board.add_to_watchlist("IBM")
        board.add_to_watchlist("INTC")

        def saved() -> list[str]:
            return board.page.request.get(embedded_site.url + "/api/watchlist/").json()["symbols"]

        deadline_ms = 10_000
        while saved() != ["IBM", "INTC"] and deadline_ms > 0:
            board.page.wait_for_timeout(100)
            deadline_ms -= 100
        assert saved() == ["IBM", "INTC"]
        assert board.errors == []
        # Another browser (no localStorage) signed in as the same user gets the same list.
        cookies = context.cookies()
    finally:
        context.close()
    other = browser.new_context(viewport=VIEWPORT)
    try:
        other.add_cookies(cookies)
        page = other.new_page()
        page.goto(embedded_site.url + "/")
        page.wait_for_function(f"() => ({WATCHLIST})().join() === 'IBM,INTC'", timeout=WAIT_MS)
    finally:
        other.close()


def test_a_feed_that_stops_makes_the_page_stale_with_a_banner_though_the_link_answers(context, embedded_site):
    """Quote frames stop (the feed is down) but the server still answers pings: the prices shown
    are aging, so the page says stale (greyed) and why, and is live again when quotes resume."""
    drop_quotes = {"on": False}

    def through(ws: sync_api.WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def relay(message: str | bytes) -> None:
            if drop_quotes["on"] and isinstance(message, str) and message.startswith(('{"t":"q"', '{"t":"snap"')):
                return
            ws.send(message)

        server.on_message(relay)

    context.route_web_socket(re.compile(r"/ws/quotes/(\?.*)?$"), through)
    board = Board(context.new_page(), embedded_site.url + "/")
    board.wait_state("live")
    assert board.page.locator("#banner").is_hidden()
    drop_quotes["on"] = True
    board.page.wait_for_selector("#banner:not([hidden])", timeout=15_000)
    assert "Feed down" in board.page.locator("#banner").inner_text()
    assert board.state("state") == "stale"  # pongs still arrive, but live would mean fresh
    assert board.page.text_content("#conn-label") == "stale · feed down"
    assert "stale" in board.page.get_attribute("#board", "class")
    drop_quotes["on"] = False
    board.page.wait_for_selector("#banner", state="hidden", timeout=15_000)
    board.wait_state("live")
    assert board.errors == []


def test_connection_state_is_announced_and_paused_rows_are_tagged(board):
    board.wait_state("live")
    announce = board.page.locator("#conn-announce")
    assert announce.get_attribute("aria-live") == "polite"
    board.page.wait_for_function("() => /^Live/.test(document.getElementById('conn-announce').textContent)")
    # Symbols are row headers.
    assert board.page.locator('tr[data-symbol="AAPL"] > th[scope="row"]').count() == 1


def test_the_wire_panel_sets_a_measured_poll_beside_the_websocket(board):
    board.wait_state("live")
    board.page.wait_for_function("() => window.tickerState.poll && window.tickerState.poll.response > 0")
    poll = board.state("poll")
    # A real answer of /api/quotes/ for 42 symbols is kilobytes; its request at least its request line.
    assert poll["response"] > poll["body"] > 1000
    assert poll["request"] > len("GET /api/quotes/ HTTP/1.1\r\n")
    board.page.wait_for_function("() => /polls\\/s · [\\d.]+×$/.test(document.getElementById('wire-poll').textContent)")
    assert re.fullmatch(r".+ up \+ .+ down", board.page.locator("#wire-poll-one").inner_text())


def test_a_hidden_tab_writes_nothing_and_catches_up_when_shown(board):
    board.wait_state("live")
    board.page.wait_for_function("() => window.tickerState.flushes > 0")
    hide = """(hidden) => {
        Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});
        Object.defineProperty(document, 'visibilityState', {value: hidden ? 'hidden' : 'visible', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    board.page.evaluate(hide, True)
    board.page.wait_for_timeout(300)  # a frame already requested may still run
    flushes, seq, age = board.state("flushes"), board.state("seq"), board.page.inner_text("#age")
    board.page.wait_for_function("(s) => window.tickerState.seq > s + 5", arg=seq)
    assert board.state("flushes") == flushes  # quotes applied to the model, no DOM written
    assert board.page.inner_text("#age") == age
    prices = board.page.evaluate(LAST_PRICES)
    board.page.evaluate(hide, False)
    board.page.wait_for_function("(f) => window.tickerState.flushes > f", arg=flushes)
    board.page.wait_for_function(f"(p) => JSON.stringify(({LAST_PRICES})()) !== JSON.stringify(p)", arg=prices)


def test_at_phone_width_symbol_last_and_change_fit_without_scrolling(browser, embedded_site):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    try:
        board = Board(context.new_page(), embedded_site.url + "/")
        board.wait_state("live")
        assert board.page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        for cell in ("th.sym .tkr", "td.last", "td.pct"):
            box = board.page.locator(f'tr[data-symbol="AAPL"] {cell}').bounding_box()
            assert box is not None and box["width"] > 0, cell
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (cell, box)
        assert board.page.locator('tr[data-symbol="AAPL"] td.vol').is_hidden()
        assert board.errors == []
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_screenshots(browser, context, embedded_site, scheme):
    """The board at 1280 and 390 px in both themes, under var/screenshots/ (and the README's)."""
    admin = _admin(context, embedded_site)
    _set_active(admin, embedded_site, "INTC", False)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        for size, name in ((VIEWPORT, "1280"), (PHONE, "390")):
            shot = browser.new_context(viewport=size, color_scheme=scheme)
            try:
                page = shot.new_page()
                board = Board(page, embedded_site.url + "/")
                page.evaluate("() => localStorage.setItem('ticker.watchlist', '[\"NVDA\",\"MSFT\",\"AAPL\"]')")
                page.reload()
                board.wait_state("live")
                page.wait_for_selector('tr[data-symbol="INTC"].paused')
                page.wait_for_function("() => window.tickerChart.bars() > 0")
                page.wait_for_function(
                    "() => document.querySelectorAll('#board td.chg.up, #board td.chg.down').length > 30",
                    timeout=30_000,
                )
                page.wait_for_timeout(1500)  # a sparkline redraw and the poll measurement
                page.screenshot(path=str(SCREENSHOT_DIR / f"board-{name}-{scheme}.png"))
                if name == "1280" and scheme == "dark" and os.environ.get("TICKER_SCREENSHOT") == "1":
                    page.screenshot(path=str(SCREENSHOT))
                assert board.errors == []
            finally:
                shot.close()
    finally:
        _set_active(admin, embedded_site, "INTC", True)
    assert (SCREENSHOT_DIR / f"board-390-{scheme}.png").stat().st_size > 10_000


CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.mark.parametrize("path", ["/", "/admin/login/", "/accounts/login/"])
def test_pages_load_under_their_content_security_policy_without_a_violation(context, embedded_site, path):
    """The strict CSP is in force (the header is there) and nothing on the page breaks it:
    no blocked script, style, image or connection, the board's own WebSocket included."""
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.add_init_script(CSP_WATCH)
    response = page.goto(embedded_site.url + path)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    if path == "/":
        page.wait_for_function(STATE_IS, arg="live")  # board.js ran and its WebSocket is open
    else:
        page.wait_for_selector("#id_username")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__cspViolations") == []
    assert [line for line in console if "Content Security Policy" in line or line.startswith("error")] == []
    page.close()
