"""``PUT /api/watchlist/`` through real daphne and uvicorn with bodies no page sends."""

from __future__ import annotations

import secrets

import pytest

from tests.helpers.accounts import WebSession, create_user
from tests.helpers.sites import Site

pytestmark = pytest.mark.integration


WATCHLIST = "/api/watchlist/"


@pytest.fixture(scope="module")
def site(any_server_site) -> Site:
    return any_server_site


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
