"""A row the vendor stops sending is shown stale on the page, with the time of its last update,
while the others stay live; it is live again when it trades. Headless Chromium against a real
daphne and a real uvicorn fed by ``runfeed --source coinbase`` on the fake Coinbase."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

from tests.helpers.browser import SCREENSHOT_DIR, Board  # noqa: E402
from tests.helpers.stale import MARK_MS, VendorSite, vendor_site  # noqa: E402

TAG = "(sym) => document.querySelector(`tr[data-symbol=\"${sym}\"] .tag`)"


@pytest.fixture(scope="module")
def site(tmp_path_factory, seeded_database, redis_server) -> Iterator[VendorSite]:
    with vendor_site(seeded_database, tmp_path_factory.mktemp("stale-page"), redis_server.port, "stale-page") as site:
        yield site


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_silenced_symbols_row_is_marked_stale_while_the_others_stay_live(context, site, server):
    board = Board(context.new_page(), site.url(server) + "/")
    page = board.page
    board.wait_state("live")
    assert page.inner_text("#source") == "Coinbase Advanced Trade"  # the header says where prices come from
    page.wait_for_selector('tr[data-symbol="AAPL"]:not(.stale)')
    site.silence("AAPL")
    try:
        row = page.wait_for_selector('tr[data-symbol="AAPL"].stale', timeout=MARK_MS + 20_000)
        tag = row.query_selector(".tag")
        assert tag is not None and tag.is_visible()
        assert re.fullmatch(r"stale since \d\d:\d\d:\d\d", tag.inner_text().strip())
        assert page.query_selector('tr[data-symbol="MSFT"].stale') is None
        assert page.evaluate(f"({TAG})('MSFT').hidden")  # live: no tag
        assert page.query_selector('tr[data-symbol="INTC"].stale') is None  # paused: never stale
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOT_DIR / f"stale-row-{server}.png",
                        clip={"x": 0, "y": 0, "width": 1280, "height": 400})
    finally:
        site.resume("AAPL")
    page.wait_for_selector('tr[data-symbol="AAPL"]:not(.stale)', timeout=20_000)
    assert page.evaluate(f"({TAG})('AAPL').hidden")
    assert board.errors == [], "the page logged errors"
