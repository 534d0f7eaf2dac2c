"""HTTP endpoints: the board page, JSON snapshots and candles, the watchlist, and the health check.

The board and the snapshot read the process's hub (the same state the WebSocket serves),
never the database; candles come from the database, written by the feed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_safe

from .. import protocol as p
from ..fanout.hub import Hub
from ..fanout.types import Catalog
from ..models import MAX_WATCHLIST, Candle, Symbol, Watchlist
from . import health
from .services import of_request

MAX_CANDLES = 1440
MAX_SPARK_MINUTES = 240


def _hub(request: HttpRequest) -> Hub:
    return of_request(request).hub


@require_safe
async def board(request: HttpRequest) -> HttpResponse:
    """The live board, first painted from the hub's current state, then kept live by board.js."""
    hub = _hub(request)
    meta = {s["s"]: s for s in hub.catalog.entries}
    rows = []
    for row in hub.rows(None):
        info = meta.get(row[p.SYM], {})
        prev = row[p.PREV_CLOSE]
        change = row[p.LAST] - prev
        rows.append({
            "sym": row[p.SYM], "name": info.get("name", ""), "paused": info.get("paused", False),
            "last": row[p.LAST], "prev": prev, "change": change, "pct": change / prev * 100 if prev else 0.0,
            "open": row[p.OPEN], "high": row[p.HIGH], "low": row[p.LOW], "volume": row[p.VOLUME],
        })
    # Who is signed in, read here (the session's user is a database query, which an async view
    # makes off the event loop): the header says so, and the watchlist is kept on the server.
    user = await request.auser()
    epoch, seq = hub.position
    return render(request, "ticker/board.html", {
        "rows": rows, "epoch": epoch, "seq": seq, "source": hub.source,
        "ws_retry_ms": settings.TICKER_WS_RETRY_MS,
        "signed_in_as": user.get_username() if user.is_authenticated else "",
    })


def catalog_tag(epoch: str, catalog: Catalog, source: str) -> str:
    """The ``ETag`` of ``/api/hello/``: a digest of the epoch, the catalog (symbols and market) and
    the feed's source, so every process that holds the same list gives the same tag, and two lists
    never share one."""
    data = orjson.dumps([epoch, list(catalog.entries), catalog.status, source], option=orjson.OPT_SORT_KEYS)
    return f'"{hashlib.blake2b(data, digest_size=12).hexdigest()}"'


def _conditional(request: HttpRequest, etag: str, body: Callable[[], HttpResponse]) -> HttpResponse:
    """``body()``, or a 304 when ``If-None-Match`` names ``etag`` or is ``*`` (RFC 9110 §13.1.2);
    either way with the tag and ``Cache-Control: no-cache``."""
    tags = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
    response = HttpResponse(status=304) if etag in tags or "*" in tags else body()
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
async def hello(request: HttpRequest) -> HttpResponse:
    """``/api/hello/``: the ``hello`` frame, for the polling fallback (the symbols, epoch and seq);
    its ``ETag`` (``catalog_tag``) changes with the symbol list, the market, the source and the
    epoch, so an unchanged one costs a 304."""
    hub = _hub(request)
    etag = catalog_tag(hub.position[0], hub.catalog, hub.source)
    return _conditional(request, etag, lambda: HttpResponse(hub.hello_text(), content_type="application/json"))


def _error(exc: p.ProtocolError, status: int) -> JsonResponse:
    return JsonResponse({"t": "err", "code": exc.code, "msg": str(exc)}, status=status)


@require_safe
async def quotes(request: HttpRequest) -> HttpResponse:
    """``/api/quotes/?symbols=AAPL,MSFT``: the ``snap`` of those symbols (all when none are named,
    or ``*``), the list read as ``/sse/quotes/`` reads it (``protocol.parse_symbols_param``):
    400 for a name that is no ticker or too many, 404 naming the unknown ones.

    The polling fallback: its ``ETag`` is the state's ``epoch:seq`` (and, while some of those
    symbols are stale, a digest of which and since when), so a poll that finds nothing new
    (``If-None-Match``) costs a 304 and no body. ``stale`` is the ``stale`` frame's ``s``: the
    symbols the feed's source has not updated within its mark, each with its newest row's time.
    """
    hub = _hub(request)
    try:
        wanted = p.parse_symbols_param(request.GET.get("symbols", ""))
    except p.ProtocolError as exc:
        return _error(exc, 400)
    unknown = hub.unknown(wanted) if wanted else []
    if unknown:
        return _error(p.unknown_symbols(unknown), 404)
    keys = None if wanted is None else frozenset(wanted)

    stale = hub.stale(keys)

    def snap() -> HttpResponse:
        epoch, seq = hub.position
        return JsonResponse({"t": "snap", "epoch": epoch, "seq": seq, "q": hub.rows(keys), "stale": stale})

    tag = hub.mark()
    if stale:
        tag += "~" + hashlib.blake2b(orjson.dumps(stale, option=orjson.OPT_SORT_KEYS), digest_size=6).hexdigest()
    return _conditional(request, f'"{tag}"', snap)


def _candles(symbol: str, limit: int) -> list[list[float | int]] | None:
    sym = Symbol.objects.filter(ticker=symbol.upper()).first()
    if sym is None:
        return None
    newest = Candle.objects.filter(symbol=sym).order_by("-start")[:limit]
    return [
        [int(c.start.timestamp() * 1000), c.open, c.high, c.low, c.close, c.volume] for c in reversed(newest)
    ]


def _whole(request: HttpRequest, name: str, default: int, most: int) -> int | JsonResponse:
    """A whole-number query parameter from 1 to ``most``, or the 400 that says what is wrong."""
    try:
        value = int(request.GET.get(name, str(default)))
    except ValueError:
        return JsonResponse({"error": f"{name} must be a whole number"}, status=400)
    if not 1 <= value <= most:
        return JsonResponse({"error": f"{name} must be between 1 and {most}"}, status=400)
    return value


@require_safe
def candles(request: HttpRequest, symbol: str) -> JsonResponse:
    """``/api/candles/<SYM>/?interval=1m&limit=N``: the newest N one-minute candles, oldest first,
    as ``[start_ms, open, high, low, close, volume]``."""
    interval = request.GET.get("interval", "1m")
    if interval != "1m":
        return JsonResponse({"error": "only interval=1m is kept"}, status=400)
    limit = _whole(request, "limit", 120, MAX_CANDLES)
    if isinstance(limit, JsonResponse):
        return limit
    rows = _candles(symbol, limit)
    if rows is None:
        return _error(p.unknown_symbols([symbol.upper()]), 404)
    return JsonResponse({"symbol": symbol.upper(), "interval": interval, "candles": rows})


def database_answers() -> bool:
    """A ``SELECT 1`` on the default database (a new connection if the old one broke)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        connection.close()  # the next request reconnects
        return False


async def healthz(request: HttpRequest) -> JsonResponse:
    """Public and terse: 200 ``{"status":"ok"}`` when the store/layer and the database answer and
    the feed is fresh or has nothing to say (a halted market, or none that ticks: see
    ``health.feed_state``), else 503 ``{"status":"degraded","layer":…,"database":…,"feed":…}``.
    Details live on ``/internal/status`` (``ticker.web.internal``)."""
    services = of_request(request)
    reachable = await services.store.ping()
    database = await sync_to_async(database_answers)()
    feed = health.feed_state(services.hub)
    if reachable and database and feed is not health.Feed.STALE:
        return JsonResponse({"status": "ok"})
    body = {"status": "degraded", "layer": "reachable" if reachable else "unreachable",
            "database": "reachable" if database else "unreachable", "feed": feed.value}
    return JsonResponse(body, status=503)


@require_safe
def closes(request: HttpRequest) -> JsonResponse:
    """``/api/closes/?minutes=30``: every symbol's one-minute closes over the last N minutes, in one
    answer (the board's sparklines at load), as ``{"closes": {"AAPL": [[start_ms, close], …]}}``."""
    minutes = _whole(request, "minutes", 30, MAX_SPARK_MINUTES)
    if isinstance(minutes, JsonResponse):
        return minutes
    since = timezone.now() - timedelta(minutes=minutes)
    out: dict[str, list[list[float | int]]] = {}
    rows = Candle.objects.filter(start__gte=since).order_by("start").values_list("symbol__ticker", "start", "close")
    for ticker, start, close in rows:
        out.setdefault(ticker, []).append([int(start.timestamp() * 1000), close])
    return JsonResponse({"minutes": minutes, "closes": out})


def _watchlist_error(status: int, code: str, msg: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "msg": msg, **extra}, status=status)


def _clean_watchlist(body: bytes) -> list[str] | JsonResponse:
    """The tickers of a ``PUT`` body ``{"symbols": [...]}``, upper-cased; or the 400 that says why not."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return _watchlist_error(400, "bad_request", "the body is not JSON")
    except RecursionError:  # arrays or objects nested thousands deep: the decoder gives up
        return _watchlist_error(400, "bad_request", "the body is nested too deeply")
    symbols = data.get("symbols") if isinstance(data, dict) else None
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        return _watchlist_error(400, "bad_request", 'the body must be {"symbols": ["AAPL", ...]}')
    tickers = [s.strip().upper() for s in symbols]
    if len(tickers) > MAX_WATCHLIST:
        return _watchlist_error(400, "too_many_symbols", f"at most {MAX_WATCHLIST} symbols in a watchlist")
    repeated = sorted({t for t in tickers if tickers.count(t) > 1})
    if repeated:
        return _watchlist_error(400, "duplicate_symbol", f"listed twice: {', '.join(repeated)}", symbols=repeated)
    known = set(Symbol.objects.filter(ticker__in=tickers).values_list("ticker", flat=True))
    unknown = [t[:16] for t in tickers if t not in known]  # a huge name is not echoed back whole
    if unknown:
        return _watchlist_error(400, "unknown_symbol", f"unknown symbol(s): {', '.join(unknown)}", symbols=unknown)
    return tickers


@ensure_csrf_cookie
@require_http_methods(["GET", "PUT"])
def watchlist(request: HttpRequest) -> JsonResponse:
    """``GET/PUT /api/watchlist/``: the signed-in user's watchlist, ``{"symbols": ["AAPL", ...]}``.

    ``GET`` answers the list (listed symbols only, in the user's order) and sets the CSRF cookie
    that a ``PUT`` must echo in ``X-CSRFToken``. ``PUT`` replaces the whole list: only listed
    tickers, each once, at most ``MAX_WATCHLIST``; anything else is a 400 naming the problem.
    Anonymous visitors get 401 (the page then keeps its list in the browser only).
    """
    if not request.user.is_authenticated:
        return _watchlist_error(401, "not_signed_in", "sign in to keep a watchlist on the server")
    if request.method == "PUT":
        tickers = _clean_watchlist(request.body)
        if isinstance(tickers, JsonResponse):
            return tickers
        Watchlist.objects.update_or_create(user=request.user, defaults={"tickers": tickers})
        return JsonResponse({"symbols": tickers, "user": request.user.get_username()})
    saved = Watchlist.objects.filter(user=request.user).first()
    tickers = saved.tickers if saved else []
    listed = set(Symbol.objects.filter(ticker__in=tickers).values_list("ticker", flat=True))
    return JsonResponse({"symbols": [t for t in tickers if t in listed], "user": request.user.get_username()})


@require_safe
def request_bytes(request: HttpRequest) -> JsonResponse:
    """``/api/request-bytes/``: how many bytes of HTTP/1.1 request headers this server received with
    this request (each ``name: value`` line and the blank line that ends them; not the request
    line). A page cannot read its own request headers; the board adds this to the request line of
    a poll to show what polling would cost, measured rather than assumed."""
    scope = getattr(request, "scope", None)
    if scope is not None:
        headers = [(k, v) for k, v in scope.get("headers", [])]
    else:  # WSGI (tests): rebuild the lines from META
        headers = [
            (k[5:].replace("_", "-").lower().encode(), str(v).encode())
            for k, v in request.META.items()
            if k.startswith("HTTP_")
        ]
    size = sum(len(k) + 2 + len(v) + 2 for k, v in headers) + 2
    return JsonResponse({"header_bytes": size, "headers": len(headers)})
