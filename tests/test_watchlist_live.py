"""``PUT /api/watchlist/`` through real daphne and uvicorn with bodies no page sends."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.helpers.accounts import WebSession, create_user
from tests.helpers.sites import Site, embedded

pytestmark = pytest.mark.integration

SERVERS = {"daphne": ("daphne", {}), "daphne-asgi": ("daphne", {"TICKER_DAPHNE_FAST_PATH": "0"}),
           "uvicorn": ("uvicorn", {})}

WATCHLIST = "/api/watchlist/"


@pytest.fixture(scope="module", params=list(SERVERS))
def site(request, tmp_path_factory, seeded_database) -> Iterator[Site]:
    server, extra = SERVERS[request.param]
    with embedded(seeded_database, tmp_path_factory.mktemp(request.param), server=server, **extra) as site:
        yield site


@pytest.fixture
def trader(site) -> WebSession:
    name = f"trader-{secrets.token_hex(4)}"
    create_user(site.env, name, "pw-123456-deep")
    session = WebSession(site.url)
    assert session.sign_in(name, "pw-123456-deep").status == 302
    assert session.get(WATCHLIST).status == 200  # the CSRF cookie
    return session


def put_raw(session: WebSession, body: bytes):
    return session.request("PUT", WATCHLIST, body, {
        "Content-Type": "application/json", "Origin": session.base, "Referer": session.base + "/",
        "X-CSRFToken": session.cookies["csrftoken"]})


def test_a_body_nested_50000_deep_is_a_clear_400(trader):
    answer = put_raw(trader, b"[" * 50_000 + b"]" * 50_000)
    assert answer.status == 400 and answer.json() == {"error": "bad_request", "msg": "the body is nested too deeply"}
    nested = put_raw(trader, b'{"symbols":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    assert nested.status == 400
    assert trader.put_json(WATCHLIST, {"symbols": ["AAPL"]}).status == 200  # the session goes on


def test_a_huge_unknown_name_is_not_echoed_back_whole(trader):
    answer = trader.put_json(WATCHLIST, {"symbols": ["X" * 15_000]})
    assert answer.status == 400 and len(answer.body) < 200
