"""The board page in headless Chromium against a real daphne (embedded mode, 42 symbols).

Playwright's sync API drives Debian's Chromium (never a downloaded browser). The tests are
plain sync functions: the sync API must not run inside an asyncio loop.

``TICKER_SCREENSHOT=1`` also writes ``docs/screenshot.png`` (1280×800) for the README.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SEEDED_SYMBOLS = 42
WAIT_MS = 10_000
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"

STATE_IS = "(state) => document.getElementById('conn').dataset.state === state"
LAST_PRICES = (
    "() => Object.fromEntries([...document.querySelectorAll('tr[data-symbol]')]"
    ".map((tr) => [tr.dataset.symbol, tr.querySelector('td.last').textContent]))"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser) -> Iterator[sync_api.BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


class Board:
    """An open board page, with the errors it logged, the sockets it opened and the frames it sent."""

    def __init__(self, page: sync_api.Page, url: str) -> None:
        self.page = page
        self.errors: list[str] = []
        self.sent: list[str] = []
        self.sockets: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("websocket", self._opened)
        page.goto(url)

    def _opened(self, ws: sync_api.WebSocket) -> None:
        self.sockets.append(ws.url)
        ws.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        self.sent.append(payload if isinstance(payload, str) else payload.decode())

    def state(self, name: str) -> Any:
        return self.page.evaluate("(n) => window.tickerState[n]", name)

    def wait_state(self, state: str) -> None:
        self.page.wait_for_function(STATE_IS, arg=state)


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


def test_page_acknowledges_as_often_as_the_server_asks(context, other_embedded_site):
    """Elsewhere hello asks for an ack every ack_ms: the page sends the seq it applied, on a timer."""
    board = Board(context.new_page(), other_embedded_site.url + "/")
    try:
        board.wait_state("live")
        board.page.wait_for_function(
            "() => window.tickerState.seq > 0 && performance.now() > 0", timeout=10_000
        )
        board.page.wait_for_timeout(4500)  # the cadence itself is what is checked: about 2 acks
        acks = [json.loads(f) for f in board.sent if '"op":"ack"' in f]
        assert 1 <= len(acks) <= 4, acks
        assert acks == sorted(acks, key=lambda a: a["seq"]) and acks[-1]["seq"] <= board.state("seq")
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


@pytest.mark.skipif(os.environ.get("TICKER_SCREENSHOT") != "1", reason="set TICKER_SCREENSHOT=1 to write it")
def test_screenshot(board, context, embedded_site):
    """docs/screenshot.png: the board after a few seconds of trading, one symbol paused."""
    admin = _admin(context, embedded_site)
    _set_active(admin, embedded_site, "INTC", False)
    try:
        board.page.bring_to_front()
        board.page.wait_for_selector('tr[data-symbol="INTC"].paused')
        board.wait_state("live")
        # Let the market move so that most rows show a change.
        board.page.wait_for_function(
            "() => document.querySelectorAll('#board td.chg.up, #board td.chg.down').length > 36",
            timeout=30_000,
        )
        SCREENSHOT.parent.mkdir(exist_ok=True)
        board.page.screenshot(path=str(SCREENSHOT))
    finally:
        _set_active(admin, embedded_site, "INTC", True)


CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.mark.parametrize("path", ["/", "/admin/login/"])
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
