from django.contrib import admin
from django.contrib.auth import views as auth_views
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
    # Any active user signs in here (the admin's login is for staff); signing out is a POST.
    path("accounts/login/", auth_views.LoginView.as_view(
        template_name="ticker/login.html", redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
