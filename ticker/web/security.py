"""Handshake checks for WebSockets, and the page's Content-Security-Policy."""

from urllib.parse import ParseResult

from asgiref.typing import ASGIApplication
from channels.security.websocket import OriginValidator
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase


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


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, with the page's own WebSocket origin added to ``connect-src``.

    CSP Level 3 lets ``'self'`` match ``ws:``/``wss:`` on the page's own host, but older
    browsers do not; naming ``ws://HOST`` (``wss://HOST`` over https) works everywhere. HOST is
    the request's validated ``Host`` (one of ``ALLOWED_HOSTS``), so nothing else is allowed.
    """

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts
        own = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", ()), own]
        parts.update = update
        return parts
