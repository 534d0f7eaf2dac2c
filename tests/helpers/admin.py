"""A real HTTP client for the Django admin: logs in and submits forms like a browser would."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request


class AdminClient:
    def __init__(self, base_url: str, username: str = "admin", password: str = "test-password") -> None:
        self.base = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.post_form("/admin/login/?next=/admin/", {"username": username, "password": password})

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as resp:
            return resp.read().decode()

    def post_form(self, path: str, fields: dict[str, str]) -> str:
        page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, f"no CSRF token on {path}"
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields}).encode()
        request = urllib.request.Request(self.base + path, data=data, headers={"Referer": self.base + path})
        with self.opener.open(request, timeout=10) as resp:
            body = resp.read().decode()
        assert "errornote" not in body and "errorlist" not in body, body[:2000]
        return body

    def add_symbol(self, ticker: str, name: str, prev_close: str, active: bool = True) -> None:
        fields = {"ticker": ticker, "name": name, "exchange": "NYSE", "currency": "USD",
                  "tick_size": "0.01", "prev_close": prev_close, "volatility": "0.3", "_save": "Save"}
        if active:
            fields["active"] = "on"
        self.post_form("/admin/ticker/symbol/add/", fields)

    def symbol_id(self, ticker: str) -> str:
        page = self.get(f"/admin/ticker/symbol/?q={ticker}")
        found = re.search(r'href="/admin/ticker/symbol/(\d+)/change/[^"]*">' + re.escape(ticker) + "<", page)
        assert found, f"{ticker} not in the admin list"
        return found.group(1)

    def set_active(self, ticker: str, active: bool) -> None:
        ident = self.symbol_id(ticker)
        self.post_form("/admin/ticker/symbol/", {
            "action": "resume" if active else "pause", "_selected_action": ident, "index": "0",
        })

    def delete_symbol(self, ticker: str) -> None:
        ident = self.symbol_id(ticker)
        self.post_form(f"/admin/ticker/symbol/{ident}/delete/", {"post": "yes"})
