"""Each server process's own state, for its operator: ``/internal/status`` (JSON) and
``/metrics`` (Prometheus). Answered to loopback clients only (a scraper or an operator on the
host); nginx refuses both paths outright, and anyone else gets a 404.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..fanout import fastpath
from . import health
from . import metrics as m
from .services import of_request

View = Callable[[HttpRequest], Coroutine[Any, Any, HttpResponse]]


def loopback_only(view: View) -> View:
    @wraps(view)
    async def guarded(request: HttpRequest) -> HttpResponse:
        address = request.META.get("REMOTE_ADDR") or ""
        try:
            local = ipaddress.ip_address(address.strip("[]")).is_loopback
        except ValueError:
            local = False
        if not local:
            raise Http404
        return await view(request)

    return guarded


@loopback_only
async def status(request: HttpRequest) -> HttpResponse:
    """This process: layer, feed (its age, and ``feed``: fresh, stale, or why it is quiet),
    the market's state, epoch and seq, clients (held, on the fast path), its name."""
    services = of_request(request)
    hub = services.hub
    age = hub.feed_age()
    epoch, seq = hub.position
    return JsonResponse({
        "layer": "reachable" if await services.store.ping() else "unreachable",
        "feed": health.feed_state(hub).value,
        "feed_age_s": None if age is None else round(age, 3),
        "market": hub.catalog.status.get("state", "open"),
        "epoch": epoch,
        "seq": seq,
        "clients": hub.client_count,
        "held": hub.held_count,
        "direct": hub.direct_count,
        "fastpath": asdict(fastpath.counters),
        "node": settings.TICKER_NODE,
    })


@loopback_only
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: the hub's counts and the edge's."""
    body = generate_latest(of_request(request).metrics) + generate_latest(m.REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
