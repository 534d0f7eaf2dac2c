"""What every vendor adapter shares: one WebSocket connection, kept up, following the admin.

``VendorStream.run`` connects, lets the adapter log in (``opened``), subscribes the active
symbols and, while the connection lasts, follows every change of them on it: the new ones are
subscribed and the gone ones unsubscribed, without a reconnect. Each message goes to the
adapter's ``receive``, which hands trades and quotes to the sink under our tickers. A message
the adapter cannot read is counted (``malformed``), logged (the first of each connection) and
skipped: no bad frame stops the feed.

A connection that fails, ends, or stays silent longer than the adapter's ``silence`` (no
message at all; where a vendor sends no heartbeats, the WebSocket's own pings catch a dead link)
is opened again after a delay drawn with full jitter from an exponential backoff, and every
symbol is subscribed again. The backoff starts over once a connection has delivered something.
``SourceRefused`` from the adapter (credentials refused, a plan's limit) ends ``run``. The sink
is told when the link is up (logged in) and when it is down (``Sink.link``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ..sources import Listing
from ..streams import Sink, SourceRefused

log = logging.getLogger("ticker.feed.vendors")

T = TypeVar("T")

# What reading a message that is not as documented raises (orjson's decode error is a ValueError).
MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError)
MAX_SIZE = 10**15  # units in one trade: far beyond any real one, and a bound on the int it makes
LOGIN_SECONDS = 10.0  # connect and log in within this, or try again
MAX_MESSAGE_BYTES = 4 * 2**20


class Reconnect(Exception):
    """Close this connection and open another (the vendor is shutting down, or said we are slow)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` (from 0) waits a time drawn uniformly
    from ``[0, min(cap, first * 2**n)]``, so that feeds cut off together do not come back together."""

    first: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.first * 2 ** min(attempt, 32)))


def price(value: Any) -> float:
    """A vendor's price, as the float that prints as the vendor's digits.

    Strings (Coinbase, Binance) and JSON numbers (Alpaca) alike: a decimal of up to 15
    significant digits becomes the one double whose shortest form is those digits, and that form
    is what the store and the protocol write (orjson). Nothing adds or rounds it afterwards, so
    ``"43210.55"`` is shown as 43210.55, never 43210.549999.

    Raises:
        ValueError: not a positive, finite number.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"price {value!r} is not a number")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"price {value!r} is not a number") from None
    result = float(number) if isinstance(value, str) else float(value)
    if not math.isfinite(result) or result <= 0:  # 1e999 is a finite Decimal, not a finite float
        raise ValueError(f"price {value!r} is not positive and finite")
    return result


def size(value: Any) -> int:
    """A trade's size in whole units (shares; a fraction of a coin counts as 0).

    Raises:
        ValueError: not a non-negative, finite number.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"size {value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"size {value!r} is not finite")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"size {value!r} is not a number") from None
    if not number.is_finite() or not 0 <= number <= MAX_SIZE:  # int() of 1e999999999 would not end
        raise ValueError(f"size {value!r} is negative, too large or not finite")
    return int(number)


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ms(text: Any) -> int:
    """Epoch milliseconds of an RFC 3339 time, nanoseconds and all (``2024-01-02T14:30:00.123456789Z``).

    Raises:
        ValueError: not such a time.
    """
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"time {text!r} is not RFC 3339")
    whole, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(stamp) * 1000 + int((fraction or "0")[:3].ljust(3, "0"))


class VendorStream:
    """One vendor's stream (a ``streams.Stream``); an adapter fills in the hooks below.

    ``names`` maps the vendor's symbol to our ticker for every symbol to follow. ``up`` is set
    while a connection is logged in (``connected``); the counters (``connections``,
    ``malformed``) are there to be read by tests and metrics.
    """

    name: ClassVar[str]
    label: str  # what the board's header says prices come from
    URL: ClassVar[str]
    SILENCE: ClassVar[float | None] = None  # seconds without any message that mean a dead link

    def __init__(
        self, url: str = "", *, silence: float | None = None, ping: float = 20.0,
        backoff: Backoff = Backoff(), rng: random.Random | None = None,
    ) -> None:
        self.url = url or self.URL
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"{self.name}: the URL must start with ws:// or wss://, not {self.url!r}")
        self.silence = silence if silence is not None else self.SILENCE
        self.ping = ping
        self.backoff = backoff
        self.rng = rng or random.Random()
        self.names: dict[str, str] = {}
        self.changed = asyncio.Event()
        self.up = asyncio.Event()
        self.connections = 0
        self.malformed = 0
        self._skipped = 0  # unreadable messages on the current connection
        self._delivered = False  # the current connection has delivered a message

    @property
    def connected(self) -> bool:
        return self.up.is_set()

    # The adapter's hooks.

    def key(self, listing: Listing) -> str:
        """The vendor's symbol for a listing, as its messages spell it."""
        return listing.feed_symbol

    async def opened(self, ws: ClientConnection) -> None:
        """Log in on a new connection (and subscribe what every connection needs)."""

    def subscribe(self, symbols: Sequence[str]) -> list[str]:
        """The frames that subscribe these vendor symbols."""
        raise NotImplementedError

    def unsubscribe(self, symbols: Sequence[str]) -> list[str]:
        """The frames that unsubscribe them."""
        raise NotImplementedError

    def receive(self, message: str | bytes, sink: Sink) -> None:
        """Read one message; hand its trades and quotes to ``sink``.

        Raises:
            ValueError, KeyError, TypeError, IndexError, AttributeError: the message is not as
                documented (it is skipped and counted).
            Reconnect: the vendor wants this connection closed.
            SourceRefused: the vendor refused us for good.
        """
        raise NotImplementedError

    # Shared by the adapters.

    def ticker(self, vendor_symbol: Any) -> str | None:
        """Our ticker for a symbol in a vendor's message (None: not one we follow, or no longer)."""
        return self.names.get(vendor_symbol) if isinstance(vendor_symbol, str) else None

    def each(self, items: Iterable[T], handle: Callable[[T], None]) -> None:
        """Handle each item of a message on its own: an unreadable one is skipped, not the others."""
        for item in items:
            try:
                handle(item)
            except MALFORMED as exc:
                self.unreadable(exc, item)

    def unreadable(self, exc: Exception, what: object) -> None:
        self.malformed += 1
        self._skipped += 1
        if self._skipped == 1:
            log.warning("%s: skipped what it cannot read (%s: %s): %.200r; further ones on this connection "
                        "are only counted", self.name, type(exc).__name__, exc, what)

    # The connection.

    def set_listings(self, listings: Sequence[Listing], last_prices: dict[str, float]) -> None:
        self.names = {self.key(item): item.ticker for item in listings}
        self.changed.set()

    async def run(self, sink: Sink) -> None:
        attempt = 0
        sink.link(False)  # until the first login
        while True:
            self._delivered = False
            try:
                # An unanswered ping fails the link; closing it then waits a quarter of that, not 10 s.
                async with connect(self.url, open_timeout=LOGIN_SECONDS, ping_interval=self.ping,
                                   ping_timeout=self.ping, close_timeout=self.ping / 4,
                                   max_size=MAX_MESSAGE_BYTES) as ws:
                    self.connections += 1
                    self._skipped = 0
                    try:
                        async with asyncio.timeout(LOGIN_SECONDS):
                            await self.opened(ws)
                    except MALFORMED as exc:
                        raise Reconnect(f"unreadable reply while logging in ({exc})") from None
                    self.up.set()
                    sink.link(True)
                    log.info("%s: connected to %s, following %d symbol(s)", self.name, self.url, len(self.names))
                    await self._session(ws, sink)
            except SourceRefused:
                log.error("%s: refused: giving up", self.name)
                raise
            except (Reconnect, OSError, TimeoutError, WebSocketException) as exc:
                log.warning("%s: connection lost (%s)", self.name, exc or type(exc).__name__)
            finally:
                self.up.clear()
                sink.link(False)
            attempt = 0 if self._delivered else attempt + 1
            delay = self.backoff.delay(attempt, self.rng)
            log.info("%s: reconnecting in %.1f s", self.name, delay)
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection, sink: Sink) -> None:
        """Read until the connection ends (it raises then)."""
        follower = asyncio.create_task(self._follow(ws))
        try:
            while True:
                try:
                    async with asyncio.timeout(self.silence):
                        message = await ws.recv()
                except TimeoutError:
                    raise Reconnect(f"no message for {self.silence:g} s") from None
                try:
                    self.receive(message, sink)
                    self._delivered = True
                except MALFORMED as exc:
                    self.unreadable(exc, message)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    async def _follow(self, ws: ClientConnection) -> None:
        """Subscribe every symbol to follow, then follow each change on this connection; if that
        fails for another reason than the connection itself, close it (``run`` opens another)."""
        try:
            await self._subscriptions(ws)
        except WebSocketException:
            pass  # the connection is gone: the reader says so
        except Exception:
            log.exception("%s: could not send the subscriptions; closing the connection", self.name)
            await ws.close(1011, "subscribing failed")

    async def _subscriptions(self, ws: ClientConnection) -> None:
        subscribed: set[str] = set()
        while True:
            self.changed.clear()
            wanted = set(self.names)
            if gone := sorted(subscribed - wanted):
                for frame in self.unsubscribe(gone):
                    await ws.send(frame)
            if new := sorted(wanted - subscribed):
                for frame in self.subscribe(new):
                    await ws.send(frame)
            if gone or new:
                log.info("%s: subscribed %s, unsubscribed %s", self.name, new or "nothing", gone or "nothing")
            subscribed = wanted
            await self.changed.wait()
