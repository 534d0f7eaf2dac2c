"""A page in headless Chromium (Debian's, never a downloaded one): the launch arguments this
machine needs, and ``Board``, an open board page with what it logged, opened and sent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from playwright import sync_api

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The screenshots the suite saves (artifacts): var/screenshots/, or TICKER_SCREENSHOT_DIR.
SCREENSHOT_DIR = Path(os.environ.get("TICKER_SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "var/screenshots"))
WAIT_MS = 10_000
STATE_IS = "(state) => document.getElementById('conn').dataset.state === state"


class Board:
    """An open board page, with the errors it logged, the sockets it opened and the frames it sent."""

    def __init__(self, page: sync_api.Page, url: str) -> None:
        self.page = page
        self.errors: list[str] = []
        self.sent: list[str] = []
        self.sockets: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("websocket", self._opened)
        page.goto(url)

    def _opened(self, ws: sync_api.WebSocket) -> None:
        self.sockets.append(ws.url)
        ws.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        self.sent.append(payload if isinstance(payload, str) else payload.decode())

    def state(self, name: str) -> Any:
        return self.page.evaluate("(n) => window.tickerState[n]", name)

    def wait_state(self, state: str) -> None:
        self.page.wait_for_function(STATE_IS, arg=state)

    def ops(self, op: str) -> list[dict]:
        """The client frames of one ``op`` sent so far, decoded."""
        return [json.loads(f) for f in self.sent if f'"op":"{op}"' in f]

    def add_to_watchlist(self, sym: str) -> None:
        self.page.fill("#wl-input", sym.lower())
        self.page.press("#wl-input", "Enter")
        self.page.wait_for_selector(f'#wl-list li[data-symbol="{sym}"]')
