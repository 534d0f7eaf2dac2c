"""Traders' accounts for tests: a user made through ``manage.py`` (the ORM, in the site's own
database), and ``WebSession``, an HTTP client that keeps cookies like a browser does but never
follows a redirect, so a test sees every 302 and where it points."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from dataclasses import dataclass
from http.cookies import SimpleCookie

from tests.helpers.procs import manage

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def create_user(env: dict[str, str], username: str, password: str, active: bool = True) -> None:
    """A plain user (not staff, not superuser) in the site's database."""
    code = (
        "from django.contrib.auth import get_user_model; "
        f"user = get_user_model().objects.create_user({username!r}, password={password!r}); "
        f"user.is_active = {active!r}; user.save(); "
        "print(user.is_staff, user.is_superuser)"
    )
    assert manage(["shell", "-v0", "-c", code], env).split() == ["False", "False"]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def json(self) -> object:
        return json.loads(self.body)


class WebSession:
    """One visitor from ``source`` (a loopback address): cookies kept, redirects not followed."""

    def __init__(self, base_url: str, source: str = "127.0.0.1") -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.base = base_url.rstrip("/")
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.source = source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10, source_address=(self.source, 0))
        try:
            conn.request(method, path, body=body or None, headers=sent)
            resp = conn.getresponse()
            text = resp.read().decode()
        finally:
            conn.close()
        for header in resp.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                    self.cookies.pop(name, None)  # Django deletes a cookie this way
                else:
                    self.cookies[name] = morsel.value
        return Response(resp.status, resp.headers, text)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post_form(self, path: str, fields: dict[str, str], token: str | None = None) -> Response:
        """A form POST as a browser sends it: the token from the form (``token``, or none when
        ``""``), the CSRF cookie, and the site's own Origin and Referer."""
        data = dict(fields)
        if token:
            data["csrfmiddlewaretoken"] = token
        form = urllib.parse.urlencode(data).encode()
        return self.request("POST", path, form, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": self.base, "Referer": self.base + path,
        })

    def form_token(self, path: str) -> str:
        page = self.get(path)
        assert page.status == 200, (path, page.status, page.body[:300])
        found = TOKEN.search(page.body)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def sign_in(self, username: str, password: str, next_url: str = "") -> Response:
        """GET the sign-in form (its CSRF cookie and token), then POST it."""
        path = "/accounts/login/" + (f"?next={urllib.parse.quote(next_url)}" if next_url else "")
        token = self.form_token(path)
        fields = {"username": username, "password": password}
        if next_url:
            fields["next"] = next_url
        return self.post_form(path, fields, token)

    def put_json(self, path: str, payload: object, csrf: bool = True) -> Response:
        headers = {"Content-Type": "application/json", "Origin": self.base, "Referer": self.base + "/"}
        if csrf:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        return self.request("PUT", path, json.dumps(payload).encode(), headers)
