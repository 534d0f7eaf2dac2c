"""When the WebSocket cannot get through, the page falls back by itself: to Server-Sent Events,
then to polling, and keeps the board live; the indicator says which. Real daphne, real Chromium;
the WebSocket is blocked as a proxy that refuses the upgrade would (``route_web_socket``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

from tests.helpers.browser import Board  # noqa: E402

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
