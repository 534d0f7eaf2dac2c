from django.contrib import admin
from django.urls import path

from ticker.web import internal, views

urlpatterns = [
    path("", views.board, name="board"),
    path("api/hello/", views.hello, name="hello"),
    path("api/quotes/", views.quotes, name="quotes"),
    path("api/candles/<str:symbol>/", views.candles, name="candles"),
    path("api/closes/", views.closes, name="closes"),
    path("api/watchlist/", views.watchlist, name="watchlist"),
    path("api/request-bytes/", views.request_bytes, name="request_bytes"),
    path("healthz", views.healthz, name="healthz"),
    path("internal/status", internal.status, name="status"),
    path("metrics", internal.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
