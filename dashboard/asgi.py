"""ASGI entry point: HTTP to Django, ``/ws/…`` to the ticker's consumers.

``make_application(services)`` wraps the router so that every request first makes sure this
process's services are started and finds them in its scope (``dashboard.services``).
"""

import os
from typing import cast

from asgiref.typing import ASGI3Application, ASGIApplication, ASGIReceiveCallable, ASGISendCallable, Scope
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from dashboard.services import Services  # noqa: E402
from ticker.web.limits import AddressLimits  # noqa: E402
from ticker.web.routing import websocket_urlpatterns  # noqa: E402
from ticker.web.security import BrowserOriginValidator  # noqa: E402


def make_application(services: Services) -> ASGIApplication:
    """The ticker's ASGI application, serving with ``services``."""
    router = ProtocolTypeRouter(
        {
            "http": django_asgi_app,  # static files: WhiteNoise, in settings.MIDDLEWARE
            "websocket": AddressLimits(
                cast(ASGI3Application, BrowserOriginValidator(URLRouter(websocket_urlpatterns))),
                settings.TICKER_WS_PER_ADDRESS, settings.TICKER_WS_RATE_PER_ADDRESS,
                settings.TICKER_WS_BURST_PER_ADDRESS, settings.TICKER_LIMIT_EXEMPT,
            ),
        }
    )

    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] in ("http", "websocket"):
            await services.ready()
            scope = cast(Scope, {**scope, "ticker": services})
        await router(scope, receive, send)

    return cast(ASGIApplication, application)


application = make_application(Services.from_settings())
