"""Handshake checks for WebSockets, the page's Content-Security-Policy, and the same security
headers on the responses Django does not make (event streams)."""

import io
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import ParseResult

from asgiref.typing import ASGIApplication
from channels.security.websocket import OriginValidator
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware


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


@cache
def _header_middleware() -> SecurityMiddleware:
    """The site's middleware that sets security headers (``settings.MIDDLEWARE`` has them all),
    around a view that answers an empty 200."""
    def empty(request: HttpRequest) -> HttpResponseBase:
        return HttpResponse()

    return SecurityMiddleware(ContentSecurityPolicyMiddleware(XFrameOptionsMiddleware(empty)))


def guarded(scope: Mapping[str, Any]) -> HttpResponse:
    """What the site's security middleware makes of a request that Django does not answer (an
    event stream): an empty 200 that carries the headers every page gets (``nosniff``,
    ``Referrer-Policy``, ``Cross-Origin-Opener-Policy``, ``X-Frame-Options``, the CSP, HSTS over
    https), or the middleware's own answer instead (the redirect to https in production; 400 for a
    ``Host`` not in ``ALLOWED_HOSTS``)."""
    try:
        response = _header_middleware()(ASGIRequest(scope, io.BytesIO()))
    except DisallowedHost:  # as Django answers a Host that is not in ALLOWED_HOSTS
        return HttpResponseBadRequest()
    assert isinstance(response, HttpResponse)  # every layer is synchronous: never awaitable
    return response
