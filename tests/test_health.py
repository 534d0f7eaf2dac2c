"""``/healthz`` and ``/internal/status`` through real daphne and uvicorn while an operator halts
the market (or pauses every symbol) in the admin: a quiet market is healthy and says why; the
feed's silence counts only while symbols should tick."""

from __future__ import annotations

import pytest

from tests.helpers.admin import AdminClient
from tests.helpers.clients import get_json
from tests.helpers.sites import Site
from tests.helpers.waiting import wait_until
from ticker.web.health import STALE_FEED_SECONDS

pytestmark = pytest.mark.integration


MARKET = "/admin/ticker/market/1/change/"


@pytest.fixture(scope="module")
def site(any_server_site) -> Site:
    return any_server_site


def status(site: Site) -> dict:
    return get_json(site.url + "/internal/status")[1]


def quiet_for_longer_than_the_stale_limit(site: Site) -> bool:
    age = status(site)["feed_age_s"]
    return age is not None and age > STALE_FEED_SECONDS + 1


def test_a_halted_market_is_healthy_and_says_so(site):
    admin = AdminClient(site.url)
    admin.get("/admin/ticker/market/")  # the one row exists
    admin.post_form(MARKET, {"halted": "on", "reason": "circuit breaker", "_save": "Save"})
    try:
        wait_until(lambda: status(site)["market"] == "halted", 10, 0.1, "the halt to reach the hub")
        wait_until(lambda: quiet_for_longer_than_the_stale_limit(site), 30, 0.2, "the feed to go quiet")
        assert get_json(site.url + "/healthz") == (200, {"status": "ok"})
        assert status(site)["feed"] == "halted"
    finally:
        admin.post_form(MARKET, {"reason": "", "_save": "Save"})
    wait_until(lambda: status(site)["feed"] == "fresh", 10, 0.1, "quotes again after the reopening")
    assert status(site)["market"] == "open" and get_json(site.url + "/healthz")[0] == 200


def test_a_market_with_every_symbol_paused_is_healthy_and_says_so(site):
    admin = AdminClient(site.url)
    everything = {"action": "pause", "select_across": "1", "index": "0", "_selected_action": admin.symbol_id("AAPL")}
    admin.post_form("/admin/ticker/symbol/", everything)
    try:
        wait_until(lambda: quiet_for_longer_than_the_stale_limit(site), 30, 0.2, "the feed to go quiet")
        assert get_json(site.url + "/healthz") == (200, {"status": "ok"})
        assert status(site)["feed"] == "idle" and status(site)["market"] == "open"
    finally:
        admin.post_form("/admin/ticker/symbol/", {**everything, "action": "resume"})
    wait_until(lambda: status(site)["feed"] == "fresh", 10, 0.1, "quotes again once the symbols resume")
