"""HTTP endpoints: the board page, JSON snapshots and candles, and the health check.

The board and the snapshot read the process's hub (the same state the WebSocket serves),
never the database; candles come from the database, written by the feed.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from . import protocol as p
from .hub import Hub
from .models import Candle, Symbol
from .runtime import ensure_started

MAX_CANDLES = 1440
STALE_FEED_SECONDS = 5.0


def _rows(hub: Hub, wanted: set[str] | None) -> list[p.Row]:
    return [row for sym, row in sorted(hub.rows.items()) if wanted is None or sym in wanted]


def _unknown(symbols: list[str]) -> JsonResponse:
    error = p.unknown_symbols(symbols)
    return JsonResponse({"t": "err", "code": error.code, "msg": str(error)}, status=404)


@require_safe
async def board(request: HttpRequest) -> HttpResponse:
    """The live board, first painted from the hub's current state, then kept live by board.js."""
    hub = (await ensure_started()).hub
    meta = {s["s"]: s for s in hub.symbols}
    rows = []
    for row in _rows(hub, None):
        info = meta.get(row[p.SYM], {})
        prev = row[p.PREV_CLOSE]
        change = row[p.LAST] - prev
        rows.append({
            "sym": row[p.SYM], "name": info.get("name", ""), "paused": info.get("paused", False),
            "last": row[p.LAST], "prev": prev, "change": change, "pct": change / prev * 100 if prev else 0.0,
            "open": row[p.OPEN], "high": row[p.HIGH], "low": row[p.LOW], "volume": row[p.VOLUME],
        })
    return render(request, "ticker/board.html", {"rows": rows, "epoch": hub.epoch, "seq": hub.seq})


@require_safe
async def quotes(request: HttpRequest) -> JsonResponse:
    """``/api/quotes/?symbols=AAPL,MSFT``: the ``snap`` of those symbols (all when none are named)."""
    hub = (await ensure_started()).hub
    raw = request.GET.get("symbols", "").strip()
    wanted = {s.strip().upper() for s in raw.split(",") if s.strip()} if raw else None
    unknown = sorted(wanted - hub.known) if wanted else []
    if unknown:
        return _unknown(unknown)
    return JsonResponse({"t": "snap", "epoch": hub.epoch, "seq": hub.seq, "q": _rows(hub, wanted)})


def _candles(symbol: str, limit: int) -> list[list[float | int]] | None:
    sym = Symbol.objects.filter(ticker=symbol.upper()).first()
    if sym is None:
        return None
    newest = Candle.objects.filter(symbol=sym).order_by("-start")[:limit]
    return [
        [int(c.start.timestamp() * 1000), c.open, c.high, c.low, c.close, c.volume] for c in reversed(newest)
    ]


@require_safe
def candles(request: HttpRequest, symbol: str) -> JsonResponse:
    """``/api/candles/<SYM>/?interval=1m&limit=N``: the newest N one-minute candles, oldest first,
    as ``[start_ms, open, high, low, close, volume]``."""
    interval = request.GET.get("interval", "1m")
    if interval != "1m":
        return JsonResponse({"error": "only interval=1m is kept"}, status=400)
    try:
        limit = int(request.GET.get("limit", "120"))
    except ValueError:
        return JsonResponse({"error": "limit must be a whole number"}, status=400)
    if not 1 <= limit <= MAX_CANDLES:
        return JsonResponse({"error": f"limit must be between 1 and {MAX_CANDLES}"}, status=400)
    rows = _candles(symbol, limit)
    if rows is None:
        return _unknown([symbol.upper()])
    return JsonResponse({"symbol": symbol.upper(), "interval": interval, "candles": rows})


async def healthz(request: HttpRequest) -> JsonResponse:
    """Process up, layer/store reachable, feed fresh. 200 when all three hold, else 503."""
    runtime = await ensure_started()
    reachable = await runtime.store.ping()
    age = runtime.hub.feed_age()
    ok = reachable and age is not None and age < STALE_FEED_SECONDS
    body = {
        "status": "ok" if ok else "degraded",
        "layer": "reachable" if reachable else "unreachable",
        "feed_age_s": None if age is None else round(age, 3),
        "epoch": runtime.hub.epoch,
        "seq": runtime.hub.seq,
        "clients": runtime.hub.client_count,
        "paused": len(runtime.hub.paused),
        "direct": runtime.hub.direct_count,
        "node": runtime.hub.node,
    }
    return JsonResponse(body, status=200 if ok else 503)
