"""HTTP as an outsider sees it, through a real daphne: static files (WhiteNoise) and path
traversals, HEAD, the Content-Security-Policy header, and the admin login's throttling."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers.admin import AdminClient
from tests.helpers.databases import DATABASES, site_env
from tests.helpers.procs import PYTHON, ROOT, start_daphne
from tests.helpers.sites import Site

pytestmark = pytest.mark.integration

TRAVERSALS = [
    "/static/../settings.py",
    "/static/../dashboard/settings.py",
    "/static/ticker/../../dashboard/settings.py",
    "/static/%2e%2e/dashboard/settings.py",
    "/static/%2E%2E/%2E%2E/manage.py",
    "/static/..%2f..%2fmanage.py",
    "/static/ticker/..%2F..%2F..%2Fdashboard%2Fsettings.py",
    "/static/%2e%2e%5c%2e%2e%5cmanage.py",
    "/static/..\\..\\manage.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/ticker/board.js/../../../manage.py",
    "/static/ticker/%00board.js",
    "/static/%c0%ae%c0%ae/manage.py",
]


# Generous: a login hashes its password (about half a second of CPU), and sixteen at once queue
# behind each other on a busy machine; a server that never answers still fails.
READ_TIMEOUT = 60


def raw(port: int, method: str, path: str, headers: dict[str, str] | None = None,
        source: str = "127.0.0.1", body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request exactly as written (no normalising of the path); the whole answer, read
    until the server closes: status, headers and every byte after them."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT, source_address=(source, 0)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


def test_static_files_are_served(embedded_site):
    port = embedded_site.procs["web"].port
    status, headers, body = raw(port, "GET", "/static/ticker/board.js")
    assert status == 200 and body == (ROOT / "ticker/static/ticker/board.js").read_bytes()
    assert headers["content-type"].startswith("text/javascript")
    status, headers, body = raw(port, "HEAD", "/static/ticker/board.css")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.parametrize("path", TRAVERSALS)
def test_a_path_traversal_is_a_plain_404(embedded_site, path):
    web = embedded_site.procs["web"]
    before = len(web.output())
    status, _, body = raw(web.port, "GET", path)
    assert status == 404, (path, body[:300])
    assert b"SECRET_KEY" not in body and b"root:" not in body and b"Traceback" not in body
    assert "Traceback" not in web.output()[before:]


@pytest.mark.parametrize("path", ["/", "/api/quotes/", "/api/quotes/?symbols=AAPL", "/api/candles/AAPL/"])
def test_head_is_answered_where_get_is(embedded_site, path):
    port = embedded_site.procs["web"].port
    status, headers, body = raw(port, "HEAD", path)
    get_status, get_headers, get_body = raw(port, "GET", path)
    assert status == get_status == 200
    assert body == b"" and len(get_body) > 0
    assert headers["content-type"] == get_headers["content-type"]


def test_other_methods_are_still_refused(embedded_site):
    port = embedded_site.procs["web"].port
    for method in ("OPTIONS", "TRACE"):  # past the CSRF check, which refuses POST, PUT, … first (403)
        status, headers, _ = raw(port, method, "/api/quotes/")
        assert status == 405 and set(headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    for method in ("POST", "PUT", "DELETE"):
        status, _, _ = raw(port, method, "/", {"Content-Length": "0"})
        assert status in (403, 405)


def test_pages_carry_a_strict_content_security_policy(embedded_site, settings):
    port = embedded_site.procs["web"].port
    for path in ("/", "/admin/login/"):
        status, headers, _ = raw(port, "GET", path)
        assert status == 200
        policy = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'"
        assert policy["style-src"].split() == ["'self'", settings.CHART_ATTRIBUTION_STYLE]  # one <style>, by hash
        assert "unsafe" not in headers["content-security-policy"]
        # The page's own WebSocket, by name (CSP 3's 'self' covers it; older browsers need it).
        assert policy["connect-src"] == f"'self' ws://127.0.0.1:{port}"
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


def test_the_board_has_no_inline_script_or_style(embedded_site):
    _, _, page = raw(embedded_site.procs["web"].port, "GET", "/")
    html = page.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline <script>"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"


# ---------------------------------------------------------------------------------------------
# Admin login throttling (django-axes)

FAILURE_LIMIT = 3


@contextmanager
def throttled_site(request, database: str, tmp) -> Iterator[Site]:
    env = site_env(request, database, tmp, TICKER_FEED_RATE="20", TICKER_LOGIN_FAILURE_LIMIT=str(FAILURE_LIMIT))
    web = start_daphne(tmp / "logs", env)
    try:
        yield Site(f"http://127.0.0.1:{web.port}", env, {"web": web}, tmp / "logs")
    finally:
        web.stop()


@pytest.fixture(scope="module", params=DATABASES)
def login_site(request, tmp_path_factory) -> Iterator[Site]:
    with throttled_site(request, request.param, tmp_path_factory.mktemp(f"login-{request.param}")) as site:
        yield site


def log_in(port: int, password: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """Submit the real admin login form from ``source``: its CSRF cookie and token, then the POST."""
    status, headers, page = raw(port, "GET", "/admin/login/?next=/admin/", source=source)
    assert status == 200, page[:300]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    cookie = headers["set-cookie"].split(";", 1)[0]
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": password,
                                   "next": "/admin/"})
    status, _, body = raw(port, "POST", "/admin/login/?next=/admin/", {
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(form)),
        "Referer": f"http://127.0.0.1:{port}/admin/login/", "Origin": f"http://127.0.0.1:{port}",
    }, source=source, body=form.encode())
    return status, body


def test_failed_logins_lock_the_address_out(login_site):
    port = login_site.procs["web"].port
    AdminClient(login_site.url)  # the right password works, and resets the count (AXES_RESET_ON_SUCCESS)
    for _ in range(FAILURE_LIMIT - 1):
        status, body = log_in(port, "wrong-password")
        assert status == 200 and b"errornote" in body
    status, body = log_in(port, "wrong-password")
    assert status == 429 and b"locked" in body.lower()
    # Now even the right password is refused from this address, before any hashing …
    status, _ = log_in(port, "test-password")
    assert status == 429
    # … but another address logs in (127.0.0.2 is loopback too).
    status, _ = log_in(port, "test-password", source="127.0.0.2")
    assert status == 302
    assert "Traceback" not in login_site.procs["web"].output()
    # An operator lifts the lockout; the admin is usable again.
    done = subprocess.run([PYTHON, "manage.py", "axes_reset_ip", "127.0.0.1"], cwd=ROOT, env=login_site.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert AdminClient(login_site.url).get("/admin/ticker/symbol/").count("AAPL") >= 1


def test_lockouts_are_recorded_in_the_database(login_site):
    """django-axes keeps its attempts in the site's database (SQLite or PostgreSQL)."""
    port = login_site.procs["web"].port
    for _ in range(FAILURE_LIMIT):
        log_in(port, "wrong-password", source="127.0.0.3")
    code = ("from axes.models import AccessAttempt; "
            "print(AccessAttempt.objects.filter(ip_address='127.0.0.3').values_list('failures_since_start', flat=True)"
            ".first())")
    done = subprocess.run([PYTHON, "manage.py", "shell", "-v0", "-c", code], cwd=ROOT, env=login_site.env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(FAILURE_LIMIT), done.stdout + done.stderr




def test_parallel_failed_logins_are_each_answered(login_site):
    """Eight wrong passwords at once from one address: every one gets the form again or the
    lockout, none a 500 (on SQLite each write waits for the lock instead of failing)."""
    from concurrent.futures import ThreadPoolExecutor

    port = login_site.procs["web"].port
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: log_in(port, "wrong-password", source="127.0.0.4")[0], range(16)))
    assert set(statuses) <= {200, 429} and 429 in statuses, statuses
    assert "Traceback" not in login_site.procs["web"].output()


def test_the_one_inline_style_allowed_is_the_vendored_charts_attribution(settings):
    """CSP allows one <style> by hash: the one lightweight-charts inserts for its attribution logo."""
    import base64
    import hashlib
    import re

    from tests.helpers.procs import ROOT

    source = (ROOT / "ticker/static/ticker/vendor/lightweight-charts.standalone.production.js").read_text()
    styles = re.findall(r'createElement\("style"\),this\.\w+\.innerText="((?:[^"\\]|\\.)*)"', source)
    assert len(styles) == 1, "the vendored library inserts another <style>: review the CSP"
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" == settings.CHART_ATTRIBUTION_STYLE
    assert settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["style-src"] == ["'self'", settings.CHART_ATTRIBUTION_STYLE]
