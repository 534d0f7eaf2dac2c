"""ASGI entry point: HTTP to Django, ``/ws/…`` to the ticker's consumers.

Every request first makes sure this process's ticker runtime (the hub, and in embedded mode
the feed) is running: daphne sends no lifespan events, so this is the one start-up path that
works the same under daphne and uvicorn (see ``ticker.runtime``).
"""

import os

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ticker.routing import websocket_urlpatterns  # noqa: E402
from ticker.runtime import ensure_started  # noqa: E402
from ticker.security import BrowserOriginValidator  # noqa: E402

http_app = django_asgi_app  # static files: WhiteNoise, in settings.MIDDLEWARE when TICKER_SERVE_STATIC

router = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)


async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] in ("http", "websocket"):
        await ensure_started()
    await router(scope, receive, send)
