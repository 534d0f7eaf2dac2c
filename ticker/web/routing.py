from django.urls import path

from .consumers import QuoteConsumer

websocket_urlpatterns = [
    path("ws/quotes/", QuoteConsumer.as_asgi()),
]
