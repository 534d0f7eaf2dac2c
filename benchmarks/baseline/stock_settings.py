"""Settings of the stock Channels baseline: the ``settings.py`` of a tutorial app, in code.

The app needs no database, no templates and no auth: only ``channels`` and a channel layer.
The layer is the channels_redis pub/sub layer (``RedisPubSubChannelLayer``, documented as the
newer of its two layers, still marked beta): measured faster than the core layer, and it does
not drop messages to a full channel (DESIGN.md §3). Its hosts are given as dicts so that
redis-py 8's defaults do not break it (DESIGN.md §3.5): no 5 s ``socket_timeout`` on the
subscription connection and no 100-connection pool cap.
"""

from __future__ import annotations

import django
from django.conf import settings


def configure(redis_url: str) -> None:
    """Configure Django for the baseline (once per process; later calls do nothing)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="stock-baseline-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        DATABASES={},
        USE_TZ=True,
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": redis_url, "socket_timeout": None, "max_connections": 10_000}],
                    "prefix": "stockbaseline",
                },
            }
        },
    )
    django.setup()
