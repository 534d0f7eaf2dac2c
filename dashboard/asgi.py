"""ASGI entry point: HTTP to Django, ``/ws/…`` to the ticker's consumers.

``make_application(services)`` wraps the router so that every request first makes sure this
process's services are started and finds them in its scope (``dashboard.services``).
"""

import os
from typing import cast

from asgiref.typing import ASGIApplication, ASGIReceiveCallable, ASGISendCallable, Scope
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from dashboard.handshakes import defer_option_dump  # noqa: E402
from dashboard.services import Services  # noqa: E402
from ticker.web import limits  # noqa: E402
from ticker.web.routing import stream_urlpatterns, websocket_urlpatterns  # noqa: E402
from ticker.web.security import BrowserOriginValidator  # noqa: E402
from ticker.web.services import attach  # noqa: E402


def make_application(services: Services) -> ASGIApplication:
    """The ticker's ASGI application, serving with ``services``."""
    # One set of caps for WebSockets and event streams together (ticker.web.limits).
    router = limits.from_settings(ProtocolTypeRouter(
        {
            # Django's type stubs know views only; URLRouter takes ASGI apps. Static files: WhiteNoise.
            "http": URLRouter([*stream_urlpatterns, re_path(r"", django_asgi_app)]),  # type: ignore[arg-type]
            "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns)),
        }
    ))

    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await router(scope, receive, send)
            return
        with services.in_flight:
            await services.ready()
            await router(cast(Scope, attach(scope, services)), receive, send)

    return cast(ASGIApplication, application)


defer_option_dump()
application = make_application(Services.from_settings())
