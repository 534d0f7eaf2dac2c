"""The page an address locked out of signing in sees (django-axes calls ``locked_out``), on the
traders' sign-in page and the admin's login alike: the site's own look, HTTP 429, and how long."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' lockout callable (``AXES_LOCKOUT_CALLABLE``); the last two arguments, which
    differ between its sync and async middleware, are not needed here."""
    cooloff = settings.AXES_COOLOFF_TIME
    minutes = max(1, round(cooloff.total_seconds() / 60)) if isinstance(cooloff, timedelta) else None
    status = getattr(settings, "AXES_HTTP_RESPONSE_CODE", 429)
    return render(request, "ticker/locked_out.html", {"minutes": minutes}, status=status)
