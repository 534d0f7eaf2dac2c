"""Handshake checks for WebSockets."""

from urllib.parse import ParseResult

from asgiref.typing import ASGIApplication
from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Refuse cross-site WebSocket handshakes (403) from browsers; let non-browser clients in.

    A browser always sends ``Origin`` on a WebSocket handshake, so a foreign Origin is a page
    of another site trying to use the visitor's connection: refused unless its host is in
    ``ALLOWED_HOSTS``. A missing Origin is a script or a terminal client, which cannot ride on
    a visitor's cookies: allowed (Channels' own validator refuses it).
    """

    def __init__(self, application: ASGIApplication) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)
