"""When the WebSocket cannot get through, the page falls back by itself: to Server-Sent Events,
then to polling, and keeps the board live; the indicator says which. Real daphne, real Chromium;
the WebSocket is blocked as a proxy that refuses the upgrade would (``route_web_socket``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

from tests.helpers.browser import Board  # noqa: E402
from tests.helpers.clients import get_json  # noqa: E402
from tests.helpers.sites import Site, embedded  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402

RETRY_WS_MS = 2000

SEQ_ADVANCES = "(seq) => window.tickerState.seq > seq + 10"
# Every `q` event's seq, as the page's EventSource received it.
RECORD_SSE_SEQS = """
window.__seqs = [];
const listen = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (kind, handler, options) {
  const record = (event) => {
    if (kind === 'q') window.__seqs.push(JSON.parse(event.data).seq);
    if (kind === 'snap') window.__seqs.push('snap');
    return handler(event);
  };
  return listen.call(this, kind, record, options);
};
"""

# Every event stream the page opens, to read their state later.
TRACK_SOURCES = """
window.__sources = [];
window.EventSource = class extends EventSource {
  constructor(...args) { super(...args); window.__sources.push(this); }
};
"""


@pytest.fixture(scope="module")
def retry_site(tmp_path_factory, seeded_database) -> Iterator[Site]:
    """daphne that tells its pages to try the WebSocket again every 2 s instead of every minute."""
    with embedded(seeded_database, tmp_path_factory.mktemp("retry"), TICKER_WS_RETRY_MS=str(RETRY_WS_MS)) as site:
        yield site


def refuse(ws: sync_api.WebSocketRoute) -> None:
    ws.close(code=1011, reason="upgrade refused")


def test_with_websockets_blocked_the_page_moves_to_sse_and_stays_live_without_a_gap(context, embedded_site):
    page = context.new_page()
    page.route_web_socket("**/ws/quotes/**", refuse)
    page.add_init_script(RECORD_SSE_SEQS)
    board = Board(page, embedded_site.url + "/")
    board.page.wait_for_function("() => window.tickerState.transport === 'SSE'", timeout=20_000)
    board.wait_state("live")
    assert board.page.text_content("#conn-label") == "live · on SSE"
    seq = board.state("seq")
    board.page.wait_for_function(SEQ_ADVANCES, arg=seq, timeout=10_000)  # quotes keep coming
    assert board.page.text_content("#wire-transport") == "SSE"
    seqs = board.page.evaluate("() => window.__seqs")
    after_snap = seqs[max(i for i, s in enumerate(seqs) if s == "snap") + 1:]
    assert len(after_snap) > 10 and after_snap == list(range(after_snap[0], after_snap[0] + len(after_snap)))
    assert board.errors == []
    page.close()


def test_with_sse_blocked_too_the_page_polls_and_stays_live(context, embedded_site):
    page = context.new_page()
    page.route_web_socket("**/ws/quotes/**", refuse)
    page.route("**/sse/quotes/**", lambda route: route.abort())
    board = Board(page, embedded_site.url + "/")
    board.page.wait_for_function("() => window.tickerState.transport === 'polling'", timeout=40_000)
    board.wait_state("live")
    assert board.page.text_content("#conn-label") == "live · polling"
    seq = board.state("seq")
    board.page.wait_for_function("(seq) => window.tickerState.seq > seq", arg=seq, timeout=10_000)
    page.close()


def test_once_the_websocket_gets_through_again_the_page_moves_back_to_it_from_sse(context, retry_site):
    """Blocked, the page moves to SSE; unblocked, its next retry (TICKER_WS_RETRY_MS) says hello
    and the page goes back to the WebSocket, resumes where SSE left off and ends the event stream."""
    blocked = {"on": True}
    sockets: list[list[dict]] = []  # per WebSocket that got through: the server frames it relayed

    def gate(ws: sync_api.WebSocketRoute) -> None:
        if blocked["on"]:
            refuse(ws)
            return
        frames: list[dict] = []
        sockets.append(frames)
        server = ws.connect_to_server()

        def relay(message: str | bytes) -> None:
            frames.append(json.loads(message))
            ws.send(message)

        server.on_message(relay)

    def status() -> dict:
        return get_json(retry_site.url + "/internal/status")[1]

    page = context.new_page()
    page.route_web_socket("**/ws/quotes/**", gate)
    page.add_init_script(RECORD_SSE_SEQS + TRACK_SOURCES)
    board = Board(page, retry_site.url + "/")
    assert page.get_attribute("#app", "data-ws-retry-ms") == str(RETRY_WS_MS)
    page.wait_for_function("() => window.tickerState.transport === 'SSE'", timeout=20_000)
    board.wait_state("live")
    assert page.text_content("#conn-label") == "live · on SSE"
    page.wait_for_function(SEQ_ADVANCES, arg=board.state("seq"), timeout=10_000)  # rows still update
    # The server serves the page one client, and it is not a WebSocket (those are on daphne's fast path).
    wait_until(lambda: (s := status())["clients"] == 1 and s["direct"] == 0, timeout=10, what="one event stream")

    blocked["on"] = False
    page.wait_for_function("() => window.tickerState.transport === 'WebSocket'", timeout=20_000)
    board.wait_state("live")
    assert page.text_content("#conn-label") == "live"
    assert page.text_content("#wire-transport") == "WebSocket"
    page.wait_for_function(SEQ_ADVANCES, arg=board.state("seq"), timeout=10_000)
    assert page.evaluate("() => window.__sources.length") >= 1
    assert page.evaluate("() => window.__sources.every((s) => s.readyState === EventSource.CLOSED)")
    # The event stream is gone on the server too: its one client is now the WebSocket.
    wait_until(lambda: (s := status())["clients"] == 1 and s["direct"] == 1, timeout=10, what="the stream closed")

    # No gap: the page resumed from the last seq SSE gave it; the server's answer (a snap of what
    # changed since) is followed by every batch in order.
    seqs = page.evaluate("() => window.__seqs")
    resumes = board.ops("resume")
    assert resumes and resumes[-1]["seq"] == seqs[-1] and resumes[-1]["epoch"] == board.state("epoch")
    live = sockets[-1]  # the socket that took over (an earlier one was the retry that heard hello)
    kinds = [frame["t"] for frame in live]
    assert kinds[0] == "hello" and "snap" in kinds
    at = kinds.index("snap")
    assert live[at]["seq"] >= seqs[-1]
    quotes = [frame["seq"] for frame in live[at + 1:] if frame["t"] == "q"]
    assert len(quotes) > 10 and quotes == list(range(live[at]["seq"] + 1, live[at]["seq"] + 1 + len(quotes)))
    assert board.errors == []
    page.close()
