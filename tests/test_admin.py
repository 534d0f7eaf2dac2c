"""The symbol admin: list, search, add, pause/resume actions, and the announcements they send."""

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ticker.layer import bus
from ticker.models import Symbol

# Each test on SQLite and on PostgreSQL (tests/conftest.py, ``database``).
pytestmark = [pytest.mark.django_db(databases="__all__"), pytest.mark.usefixtures("database")]


@pytest.fixture
def control():
    """A channel on the (in-memory) layer that has joined the control group; returns a receiver."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bus.CONTROL_GROUP, channel)

    def receive() -> dict:
        return async_to_sync(layer.receive)(channel)

    return receive


@pytest.fixture
def symbols():
    Symbol.objects.create(ticker="AAPL", name="Apple Inc.", prev_close=Decimal("229.87"))
    Symbol.objects.create(ticker="MSFT", name="Microsoft Corp.", prev_close=Decimal("421.53"))


def test_changelist_lists_and_searches(admin_client, symbols):
    page = admin_client.get("/admin/ticker/symbol/", {"q": "apple"}).content.decode()
    assert "Apple Inc." in page and "Microsoft" not in page


def test_adding_a_symbol_announces_the_new_list(admin_client, control, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/ticker/symbol/add/", {
            "ticker": "nvda", "name": "NVIDIA", "exchange": "NASDAQ", "currency": "USD", "active": "on",
            "tick_size": "0.01", "prev_close": "141.98", "volatility": "0.5",
        })
    assert response.status_code == 302
    assert Symbol.objects.get().ticker == "NVDA"  # normalised
    message = control()
    assert message["type"] == bus.SYMBOLS
    assert message["symbols"] == [{"s": "NVDA", "name": "NVIDIA", "ex": "NASDAQ", "ccy": "USD", "tick": 0.01,
                                   "prev": 141.98, "paused": False}]


def test_invalid_ticker_is_refused(admin_client):
    response = admin_client.post("/admin/ticker/symbol/add/", {
        "ticker": "no spaces!", "name": "X", "exchange": "X", "currency": "USD",
        "tick_size": "0.01", "prev_close": "1", "volatility": "0.3",
    })
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert not Symbol.objects.exists()


@pytest.mark.parametrize(("action", "active"), [("pause", False), ("resume", True)])
def test_pause_and_resume_actions_announce(admin_client, symbols, control, django_capture_on_commit_callbacks,
                                           action, active):
    Symbol.objects.update(active=not active)
    ids = list(Symbol.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/ticker/symbol/", {"action": action, "_selected_action": ids})
    assert set(Symbol.objects.values_list("active", flat=True)) == {active}
    assert {s["paused"] for s in control()["symbols"]} == {not active}


def test_deleting_announces_the_list_without_it(admin_client, symbols, control, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        Symbol.objects.get(ticker="AAPL").delete()
    assert [s["s"] for s in control()["symbols"]] == ["MSFT"]


def test_anonymous_users_cannot_reach_the_admin(client):
    response = client.get("/admin/ticker/symbol/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_symbol_change_is_saved_even_when_the_layer_is_unreachable(settings, django_capture_on_commit_callbacks):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}]},
    }}
    channel_layers.backends.clear()
    with django_capture_on_commit_callbacks(execute=True):
        Symbol.objects.create(ticker="NEW", name="New", prev_close=Decimal("1"))
    assert Symbol.objects.filter(ticker="NEW").exists()


def test_halting_the_market_announces_it_with_the_reason_and_reopening_too(
    admin_client, symbols, control, django_capture_on_commit_callbacks
):
    assert "open" in admin_client.get("/admin/ticker/market/").content.decode()  # the one row, made on first look
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/ticker/market/1/change/", {"halted": "on", "reason": "Circuit breaker"})
    assert response.status_code == 302
    message = control()
    assert message["market"]["state"] == "halted" and message["market"]["reason"] == "Circuit breaker"
    assert [s["s"] for s in message["symbols"]] == ["AAPL", "MSFT"]  # each symbol's own flag untouched
    assert not any(s["paused"] for s in message["symbols"])
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/ticker/market/1/change/", {"reason": ""})
    assert control()["market"] == {"state": "open", "reason": ""}
    assert admin_client.get("/admin/ticker/market/add/").status_code == 403  # one market, never two


def add_symbol(admin_client, **fields: str):
    form = {"ticker": "NEW", "name": "New", "exchange": "NASDAQ", "currency": "USD", "active": "on",
            "tick_size": "0.01", "prev_close": "1", "volatility": "0.3", **fields}
    return admin_client.post("/admin/ticker/symbol/add/", form)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"tick_size": "5000", "prev_close": "1"}, "At most 1 % of the previous close (0.01 here): a tick of 5000 "
                                                    "on a price of 1 would move the price 500,000 % at a step."),
        ({"tick_size": "0.02", "prev_close": "1"}, "At most 1 % of the previous close (0.01 here)"),
        ({"prev_close": "0.005", "tick_size": "0.0001"},
         "At least 0.01: the smallest tick (0.0001) is then 1 % of it."),
        ({"volatility": "1e6"}, "At most 5 (500 % a year): far beyond it the simulated price falls to one tick"),
        ({"volatility": "-0.1"}, "At least 0: a volatility is a spread of returns, never negative."),
    ],
    ids=["tick-5000-on-1", "tick-2-percent", "close-below-a-hundred-ticks", "volatility-1e6", "volatility-negative"],
)
def test_the_admin_refuses_a_symbol_that_would_not_trade_sensibly_and_says_why(admin_client, fields, reason):
    response = add_symbol(admin_client, **fields)
    page = response.content.decode()
    assert response.status_code == 200 and "errorlist" in page
    assert reason in page.replace("&#x27;", "'")
    assert not Symbol.objects.exists()


def test_the_admin_accepts_the_bounds_themselves_and_shows_them_beside_the_fields(admin_client):
    page = admin_client.get("/admin/ticker/symbol/add/").content.decode()
    assert "at most 1 % of the previous close" in page and "0 (a flat line) to 5 (500 % a year" in page
    response = add_symbol(admin_client, tick_size="0.01", prev_close="1", volatility="5")
    assert response.status_code == 302
    response = add_symbol(admin_client, ticker="LOW", tick_size="0.0001", prev_close="0.01", volatility="0")
    assert response.status_code == 302
    assert Symbol.objects.count() == 2


def test_the_vendor_symbol_is_edited_in_the_admin_and_a_bad_one_is_refused(admin_client):
    assert "What the market-data vendor calls it" in admin_client.get("/admin/ticker/symbol/add/").content.decode()
    assert add_symbol(admin_client, ticker="BTC-USD", prev_close="90000").status_code == 302
    assert Symbol.objects.get(ticker="BTC-USD").vendor_symbol == ""  # empty: the feed uses the ticker
    assert add_symbol(admin_client, ticker="BTC", prev_close="90000", vendor_symbol=" BTCUSDT ").status_code == 302
    assert Symbol.objects.get(ticker="BTC").vendor_symbol == "BTCUSDT"
    response = add_symbol(admin_client, ticker="BAD", vendor_symbol="no spaces")
    assert response.status_code == 200 and "Letters, digits, and . - _ / : only" in response.content.decode()
