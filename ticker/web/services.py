"""What the edge (views, consumers, event streams, health) needs of the process's services, and
the one way to find them in a request's scope.

The composition root (``dashboard.services.Services``) satisfies ``Services``; the ASGI entry
point puts it in every scope with ``attach``, and the edge reads it with ``of_scope`` or
``of_request``. Nothing of the edge imports the composition root.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from prometheus_client import CollectorRegistry

from ..fanout.hub import Hub

SCOPE_KEY = "ticker"


class Store(Protocol):
    """What health asks of the quote store."""

    async def ping(self) -> bool:
        """True when the store (and the layer behind it) answers."""
        ...


class Services(Protocol):
    """The process's hub, its store and the hub's metrics registry."""

    @property
    def hub(self) -> Hub: ...
    @property
    def store(self) -> Store: ...
    @property
    def metrics(self) -> CollectorRegistry: ...


def attach(scope: Mapping[str, Any], services: Services) -> dict[str, Any]:
    """A copy of ``scope`` that carries ``services``."""
    return {**scope, SCOPE_KEY: services}


def of_scope(scope: Mapping[str, Any]) -> Services:
    """The services ``attach`` put in ``scope``.

    Raises:
        LookupError: the scope did not come through the ticker's ASGI application.
    """
    return cast(Services, scope[SCOPE_KEY])


def of_request(request: HttpRequest) -> Services:
    """The services of an ASGI request (a view's).

    Raises:
        LookupError: the request was not served over ASGI by the ticker's application.
    """
    if not isinstance(request, ASGIRequest):
        raise LookupError("the ticker's services are found in ASGI requests only")
    return of_scope(request.scope)
