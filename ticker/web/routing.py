"""Routes to the ticker's consumers (Channels' ``URLRouter`` takes these ASGI apps)."""

from django.urls import path

from .consumers import QuoteConsumer
from .sse import QuoteStream

websocket_urlpatterns = [
    path("ws/quotes/", QuoteConsumer.as_asgi()),
]
stream_urlpatterns = [
    path("sse/quotes/", QuoteStream.as_asgi()),
]
