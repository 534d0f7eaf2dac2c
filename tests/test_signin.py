"""A trader's account through a real daphne: signing in at /accounts/login/ (any active user,
not only staff), the watchlist kept on the server with that session, the board's header, the
lockout after wrong passwords (django-axes, shared with the admin's login) per address and per
account, and signing out by POST only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.accounts import WebSession, create_user
from tests.helpers.procs import manage
from tests.helpers.sites import Site, embedded

pytestmark = pytest.mark.integration

FAILURE_LIMIT = 3
ACCOUNT_FAILURE_LIMIT = 6
PASSWORD = "a-trader-password"
WATCHLIST = "/api/watchlist/"


@pytest.fixture(scope="module")
def site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("signin")
    with embedded(seeded_database, tmp, TICKER_FEED_RATE="20", TICKER_LOGIN_FAILURE_LIMIT=str(FAILURE_LIMIT),
                  TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT=str(ACCOUNT_FAILURE_LIMIT)) as site:
        for name in ("trader", "lockme", "outgoing", "other", "target"):
            create_user(site.env, name, PASSWORD)
        create_user(site.env, "former", PASSWORD, active=False)
        yield site


def signed_in(site: Site, username: str, source: str = "127.0.0.1") -> WebSession:
    session = WebSession(site.url, source)
    answer = session.sign_in(username, PASSWORD)
    assert answer.status == 302 and answer.location == "/", (answer.status, answer.body[:500])
    assert "sessionid" in session.cookies
    return session


def test_the_sign_in_page_is_a_plain_form_under_the_strict_policy(site):
    page = WebSession(site.url).get("/accounts/login/")
    assert page.status == 200
    assert 'name="username"' in page.body and 'type="password"' in page.body
    assert 'name="csrfmiddlewaretoken"' in page.body and 'method="post"' in page.body
    assert "<style" not in page.body and " style=" not in page.body and "<script" not in page.body
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "unsafe" not in policy and "form-action 'self'" in policy


def test_a_trader_signs_in_and_keeps_a_watchlist_on_the_server(site):
    trader = signed_in(site, "trader")
    board = trader.get("/")
    assert board.status == 200
    assert "signed in as <strong" in board.body and ">trader</strong>" in board.body
    assert 'action="/accounts/logout/"' in board.body and "kept on the server for trader" in board.body
    assert 'data-user="trader"' in board.body and 'href="/accounts/login/"' not in board.body

    first = trader.get(WATCHLIST)
    assert first.status == 200 and first.json() == {"symbols": [], "user": "trader"}
    saved = trader.put_json(WATCHLIST, {"symbols": ["msft", "AAPL"]})
    assert saved.status == 200 and saved.json() == {"symbols": ["MSFT", "AAPL"], "user": "trader"}
    assert trader.get(WATCHLIST).json() == {"symbols": ["MSFT", "AAPL"], "user": "trader"}
    # The same account from another browser (a new session) reads the same list.
    assert signed_in(site, "trader").get(WATCHLIST).json()["symbols"] == ["MSFT", "AAPL"]
    # Without the CSRF header the session alone changes nothing.
    refused = trader.put_json(WATCHLIST, {"symbols": ["IBM"]}, csrf=False)
    assert refused.status == 403
    assert trader.get(WATCHLIST).json()["symbols"] == ["MSFT", "AAPL"]
    # Signed in is not staff: the admin still sends this user to its own login.
    admin = trader.get("/admin/")
    assert admin.status == 302 and admin.location.startswith("/admin/login/")
    # Signed in already, the sign-in page goes back to the board.
    again = trader.get("/accounts/login/")
    assert again.status == 302 and again.location == "/"


def test_anonymous_visitors_are_offered_the_sign_in_and_get_no_server_list(site):
    visitor = WebSession(site.url)
    board = visitor.get("/")
    assert board.status == 200
    assert 'href="/accounts/login/">Sign in</a>' in board.body and "only in this browser" in board.body
    assert "signed in as" not in board.body and "data-user=" not in board.body
    answer = visitor.get(WATCHLIST)
    assert answer.status == 401 and answer.json()["error"] == "not_signed_in"
    assert "csrftoken" in visitor.cookies  # the endpoint's GET sets it, signed in or not
    assert visitor.put_json(WATCHLIST, {"symbols": ["IBM"]}).status == 401
    assert visitor.put_json(WATCHLIST, {"symbols": ["IBM"]}, csrf=False).status == 403


@pytest.mark.parametrize(("username", "password"), [
    ("trader", "wrong-password"), ("nobody", PASSWORD), ("former", PASSWORD),  # an inactive user
])
def test_a_failed_sign_in_shows_the_form_again_and_opens_no_session(site, username, password):
    visitor = WebSession(site.url, source="127.0.0.10")
    answer = visitor.sign_in(username, password)
    assert answer.status == 200 and 'class="form-error"' in answer.body
    assert "Please enter a correct username and password" in answer.body
    assert "sessionid" not in visitor.cookies
    assert visitor.get(WATCHLIST).status == 401
    manage(["axes_reset_ip", "127.0.0.10"], site.env)  # the next case starts from no failures


def test_the_sign_in_never_redirects_off_the_site(site):
    visitor = WebSession(site.url, source="127.0.0.11")
    answer = visitor.sign_in("other", PASSWORD, next_url="https://evil.example/")
    assert answer.status == 302 and answer.location == "/"
    visitor = WebSession(site.url, source="127.0.0.11")
    answer = visitor.sign_in("other", PASSWORD, next_url="/api/watchlist/")
    assert answer.status == 302 and answer.location == "/api/watchlist/"


def test_wrong_passwords_lock_the_address_out_of_both_logins(site):
    """The sign-in page is throttled as the admin's login is: the Nth failure from an address
    locks it out (429, the right password included), for both forms; other addresses sign in."""
    source = "127.0.0.20"
    for _ in range(FAILURE_LIMIT - 1):
        answer = WebSession(site.url, source).sign_in("lockme", "wrong-password")
        assert answer.status == 200 and 'class="form-error"' in answer.body
    answer = WebSession(site.url, source).sign_in("lockme", "wrong-password")
    assert answer.status == 429 and "locked out for 15 minutes" in answer.body
    assert "ticker/board.css" in answer.body and "<style" not in answer.body  # the site's own page
    visitor = WebSession(site.url, source)
    answer = visitor.sign_in("lockme", PASSWORD)
    assert answer.status == 429 and "sessionid" not in visitor.cookies
    # The admin's login refuses that address too (the count is the address's, whichever form).
    admin = WebSession(site.url, source)
    token = admin.form_token("/admin/login/")
    answer = admin.post_form("/admin/login/", {"username": "admin", "password": "test-password"}, token)
    assert answer.status == 429
    # Another address signs in.
    signed_in(site, "lockme", source="127.0.0.21")
    assert "Traceback" not in site.procs["web"].output()
    # An operator lifts the lockout; the right password works again from that address.
    manage(["axes_reset_ip", source], site.env)
    signed_in(site, "lockme", source=source)


def test_guesses_at_one_account_from_many_addresses_are_bounded_without_locking_its_trader_out(site):
    """Ten addresses, each staying under the per-address limit, guess at one account: the account
    takes ``ACCOUNT_FAILURE_LIMIT`` wrong passwords in all, then is closed to every address it
    never signed in from, the right password included; its trader, from an address they signed
    in from before, signs in throughout. Other accounts stay open to those addresses."""
    home = "127.0.0.30"
    signed_in(site, "target", source=home)
    answers = []
    for n in range(10):
        for _ in range(FAILURE_LIMIT - 1):
            answers.append(WebSession(site.url, f"127.0.0.{40 + n}").sign_in("target", "wrong-password").status)
    assert answers == [200] * (ACCOUNT_FAILURE_LIMIT - 1) + [429] * (len(answers) - ACCOUNT_FAILURE_LIMIT + 1)
    stranger = WebSession(site.url, "127.0.0.60")
    answer = stranger.sign_in("target", PASSWORD)
    assert answer.status == 429 and "sessionid" not in stranger.cookies
    assert "locked out for 15 minutes" in answer.body
    signed_in(site, "target", source=home)  # the trader, at home, is not locked out
    signed_in(site, "other", source="127.0.0.60")  # nor is anyone else on that stranger's address
    assert WebSession(site.url, "127.0.0.61").sign_in("target", PASSWORD).status == 429  # still closed
    assert "Traceback" not in site.procs["web"].output()
    # An operator lifts the account's lockout: a new address signs in with the right password.
    manage(["axes_reset_username", "target"], site.env)
    signed_in(site, "target", source="127.0.0.61")


def test_signing_out_is_a_post_with_the_csrf_token(site):
    trader = signed_in(site, "outgoing")
    # A GET (a link, a prefetch, an <img>) does not sign anyone out.
    assert trader.get("/accounts/logout/").status == 405
    assert trader.get(WATCHLIST).status == 200
    # Nor does a POST without the token (another site's form).
    assert trader.post_form("/accounts/logout/", {}, token="").status == 403
    assert trader.get(WATCHLIST).status == 200
    # The board's own form does, and comes back to the board.
    token = trader.form_token("/")  # the sign-out form on the board carries it
    answer = trader.post_form("/accounts/logout/", {}, token)
    assert answer.status == 302 and answer.location == "/"
    assert "sessionid" not in trader.cookies
    assert trader.get(WATCHLIST).status == 401
    board = trader.get("/")
    assert 'href="/accounts/login/">Sign in</a>' in board.body and "signed in as" not in board.body
