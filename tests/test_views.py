"""The page's JSON endpoints that read the database: the watchlist and the sparkline closes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ticker.models import MAX_WATCHLIST, Candle, Symbol, Watchlist
from ticker.seed import seed_demo_symbols, seed_symbols

pytestmark = pytest.mark.django_db

URL = "/api/watchlist/"


@pytest.fixture
def user(django_user_model):
    seed_symbols()
    return django_user_model.objects.create_user("trader", password="pw-123456")


@pytest.fixture
def signed_in(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def put(client: Client, body: object, token: str | None = None):
    if token is None:
        client.get(URL)  # sets the CSRF cookie, as the page's first GET does
        token = client.cookies["csrftoken"].value
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.put(URL, raw, content_type="application/json", HTTP_X_CSRFTOKEN=token)


def test_anonymous_visitors_get_401_and_keep_their_list_in_the_browser(user):
    response = Client().get(URL)
    assert response.status_code == 401
    assert response.json()["error"] == "not_signed_in"


def test_a_new_user_has_an_empty_watchlist_and_a_csrf_cookie(signed_in):
    response = signed_in.get(URL)
    assert response.status_code == 200
    assert response.json() == {"symbols": [], "user": "trader"}
    assert signed_in.cookies["csrftoken"].value


def test_put_replaces_the_list_in_the_users_order(signed_in, user):
    response = put(signed_in, {"symbols": ["msft", "AAPL", "NVDA"]})
    assert response.status_code == 200, response.content
    assert response.json()["symbols"] == ["MSFT", "AAPL", "NVDA"]
    assert Watchlist.objects.get(user=user).tickers == ["MSFT", "AAPL", "NVDA"]
    assert signed_in.get(URL).json()["symbols"] == ["MSFT", "AAPL", "NVDA"]
    assert put(signed_in, {"symbols": ["NVDA"]}).json()["symbols"] == ["NVDA"]


def test_put_without_the_csrf_token_is_refused(signed_in):
    signed_in.get(URL)
    response = signed_in.put(URL, json.dumps({"symbols": ["AAPL"]}), content_type="application/json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "bad_request"),
        ({"symbols": "AAPL"}, "bad_request"),
        ({"symbols": [1, 2]}, "bad_request"),
        (["AAPL"], "bad_request"),
        ({"symbols": ["AAPL", "NOPE", "ZZZZ9"]}, "unknown_symbol"),
        ({"symbols": ["AAPL", "aapl"]}, "duplicate_symbol"),
    ],
)
def test_put_refuses_what_is_not_a_list_of_known_tickers(signed_in, body, code):
    response = put(signed_in, body)
    assert response.status_code == 400
    assert response.json()["error"] == code
    if code == "unknown_symbol":
        assert response.json()["symbols"] == ["NOPE", "ZZZZ9"]


def test_put_refuses_more_than_the_limit(signed_in):
    seed_demo_symbols(MAX_WATCHLIST + 5)
    tickers = list(Symbol.objects.values_list("ticker", flat=True)[: MAX_WATCHLIST + 1])
    response = put(signed_in, {"symbols": tickers})
    assert response.status_code == 400 and response.json()["error"] == "too_many_symbols"
    assert put(signed_in, {"symbols": tickers[:MAX_WATCHLIST]}).status_code == 200


def test_a_deleted_symbol_drops_out_of_the_answer(signed_in):
    put(signed_in, {"symbols": ["AAPL", "INTC"]})
    Symbol.objects.filter(ticker="INTC").delete()
    assert signed_in.get(URL).json()["symbols"] == ["AAPL"]


def test_other_methods_are_not_allowed(signed_in):
    assert signed_in.post(URL, {}).status_code in (403, 405)
    assert Client().delete(URL).status_code == 405


def test_closes_answers_every_symbols_recent_minutes_oldest_first(user):
    aapl = Symbol.objects.get(ticker="AAPL")
    now = timezone.now().replace(second=0, microsecond=0)
    for minutes_ago, close in ((45, 1.0), (2, 2.0), (1, 3.0)):
        Candle.objects.create(symbol=aapl, start=now - timedelta(minutes=minutes_ago),
                              open=close, high=close, low=close, close=close)
    body = Client().get("/api/closes/?minutes=30").json()
    assert [c[1] for c in body["closes"]["AAPL"]] == [2.0, 3.0]
    assert body["closes"]["AAPL"][0][0] == int((now - timedelta(minutes=2)).timestamp() * 1000)
    assert Client().get("/api/closes/?minutes=0").status_code == 400
    assert Client().get("/api/closes/?minutes=x").status_code == 400


def test_request_bytes_counts_the_header_lines_the_server_received():
    body = Client().get("/api/request-bytes/", HTTP_X_PADDING="a" * 100).json()
    # "x-padding: " + 100 + CRLF at least, and the blank line.
    assert body["header_bytes"] >= len("x-padding: ") + 100 + 2 + 2
    assert body["headers"] >= 1
