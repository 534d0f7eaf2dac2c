"""Signing in through the page, in headless Chromium against a real daphne: a trader (not
staff) signs in from the header, builds a watchlist, and finds it again in a fresh browser
signed in anew, from the server; the header at desktop and phone widths (screenshots under
``var/screenshots/``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

from tests.helpers.accounts import create_user  # noqa: E402
from tests.helpers.browser import PHONE, SCREENSHOT_DIR, VIEWPORT, WAIT_MS, Board  # noqa: E402

PASSWORD = "a-trader-password"
WATCHLIST = "() => [...document.querySelectorAll('#wl-list li')].map((li) => li.dataset.symbol)"


@pytest.fixture(scope="module")
def trader(embedded_site) -> str:
    create_user(embedded_site.env, "ann", PASSWORD)
    return "ann"


def sign_in_from_the_header(board: Board, site, username: str) -> None:
    """Sign in as a person does: the header's link, the form, and back on the board."""
    board.page.click("nav.account a[href='/accounts/login/']")
    board.page.wait_for_url(site.url + "/accounts/login/")
    board.page.fill("#id_username", username)
    board.page.fill("#id_password", PASSWORD)
    board.page.click("button[type=submit]")
    board.page.wait_for_url(site.url + "/")
    board.wait_state("live")
    assert board.page.inner_text("nav.account .account-name") == f"signed in as {username}"
    board.page.wait_for_selector("#wl-where[data-source=server]")  # the server's list, loaded


def test_a_trader_signs_in_and_finds_the_watchlist_on_the_server_in_a_fresh_browser(
        browser, embedded_site, trader):
    def saved(page: sync_api.Page) -> list[str]:
        return page.request.get(embedded_site.url + "/api/watchlist/").json()["symbols"]

    first = browser.new_context(viewport=VIEWPORT)
    first.set_default_timeout(WAIT_MS)
    try:
        board = Board(first.new_page(), embedded_site.url + "/")
        board.wait_state("live")
        assert board.page.inner_text("#wl-where") == "only in this browser"
        sign_in_from_the_header(board, embedded_site, trader)
        assert board.page.inner_text("#wl-where") == f"kept on the server for {trader}"
        board.add_to_watchlist("NVDA")
        board.add_to_watchlist("KO")
        board.page.wait_for_function(f"() => ({WATCHLIST})().join() === 'NVDA,KO'")
        deadline_ms = 10_000
        while saved(board.page) != ["NVDA", "KO"] and deadline_ms > 0:  # saved after a short delay
            board.page.wait_for_timeout(100)
            deadline_ms -= 100
        assert saved(board.page) == ["NVDA", "KO"]
        assert board.errors == []
    finally:
        first.close()

    # A fresh browser: no cookie, nothing in localStorage. Anonymous, its list is empty ...
    second = browser.new_context(viewport=VIEWPORT)
    second.set_default_timeout(WAIT_MS)
    try:
        board = Board(second.new_page(), embedded_site.url + "/")
        board.wait_state("live")
        assert board.page.evaluate(WATCHLIST) == []
        # ... signed in, the server's list fills the panel (and this browser's copy).
        sign_in_from_the_header(board, embedded_site, trader)
        board.page.wait_for_function(f"() => ({WATCHLIST})().join() === 'NVDA,KO'")
        assert board.page.evaluate("() => JSON.parse(localStorage.getItem('ticker.watchlist'))") == ["NVDA", "KO"]
        # Signing out (the header's button, a POST) comes back to the board, anonymous.
        board.page.click("nav.account button[type=submit]")
        board.page.wait_for_selector("nav.account a[href='/accounts/login/']")
        assert board.page.url == embedded_site.url + "/"
        assert board.page.inner_text("#wl-where") == "only in this browser"
        assert board.page.request.get(embedded_site.url + "/api/watchlist/").status == 401
        assert board.errors == []
    finally:
        second.close()


@pytest.mark.parametrize(("size", "name"), [(VIEWPORT, "1280"), (PHONE, "390")])
def test_the_header_fits_signed_in_and_out(browser, embedded_site, trader, size, name):
    """At 1280 px the account sits at the bar's right end on one line; at 390 px it shares the
    first line with the brand and the connection state moves to the second; nothing overlaps or
    scrolls sideways. Screenshots of the board signed in and of the sign-in page."""
    phone = size is PHONE
    context = browser.new_context(viewport=size, is_mobile=phone, has_touch=phone)
    context.set_default_timeout(WAIT_MS)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def box(selector: str) -> dict[str, float]:
        found = board.page.locator(selector).bounding_box()
        assert found is not None and found["width"] > 0, selector
        assert found["x"] >= 0 and found["x"] + found["width"] <= size["width"], (selector, found)
        return found

    def apart(a: dict[str, float], b: dict[str, float]) -> bool:
        return (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])

    try:
        board = Board(context.new_page(), embedded_site.url + "/")
        board.wait_state("live")
        box("nav.account a[href='/accounts/login/']")
        board.page.click("nav.account a[href='/accounts/login/']")
        board.page.wait_for_selector("#id_username")
        board.page.screenshot(path=str(SCREENSHOT_DIR / f"signin-{name}.png"))
        assert board.page.evaluate("() => document.documentElement.scrollWidth") <= size["width"]
        board.page.goto(embedded_site.url + "/")
        sign_in_from_the_header(board, embedded_site, trader)

        brand, account, status = box(".topbar .brand"), box("nav.account"), box(".topbar .status")
        box("nav.account button[type=submit]")
        assert apart(account, status) and apart(account, brand)
        assert abs((account["y"] + account["height"] / 2) - (brand["y"] + brand["height"] / 2)) < 4  # one line
        if phone:
            assert status["y"] >= account["y"] + account["height"] - 1  # the state on the second line
        else:
            assert status["x"] + status["width"] <= account["x"]  # the account at the right end
            assert box(".topbar")["height"] <= 50
        assert board.page.evaluate("() => document.documentElement.scrollWidth") <= size["width"]
        board.page.screenshot(path=str(SCREENSHOT_DIR / f"board-{name}-signed-in.png"))
        assert board.errors == []
    finally:
        context.close()
    assert (SCREENSHOT_DIR / f"board-{name}-signed-in.png").stat().st_size > 10_000
