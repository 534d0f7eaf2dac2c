from django.contrib import admin
from django.urls import path

from ticker.web import internal, views

urlpatterns = [
    path("", views.board, name="board"),
    path("api/quotes/", views.quotes, name="quotes"),
    path("api/candles/<str:symbol>/", views.candles, name="candles"),
    path("healthz", views.healthz, name="healthz"),
    path("internal/status", internal.status, name="status"),
    path("metrics", internal.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
