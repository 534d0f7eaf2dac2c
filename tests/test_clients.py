"""The terminal client's pure parts: the table state, the wire tap and the SSE parsers (the rules it
follows: tests/test_client_rules.py)."""

from __future__ import annotations

import json

import pytest

from ticker.clients.sse import ChunkedDecoder, Event, EventStream, last_event_id, stream_url
from ticker.clients.state import TableState
from ticker.clients.watch import socket_url
from ticker.clients.wiretap import FrameHeader, HttpHead, WireTap, describe

HELLO = {
    "t": "hello", "v": 1, "epoch": "E1", "seq": 7, "node": "web1:1",
    "symbols": [
        {"s": "AAPL", "name": "Apple Inc.", "prev": 100.0, "paused": False},
        {"s": "MSFT", "name": "Microsoft Corp.", "prev": 200.0, "paused": True},
    ],
}
SNAP = {"t": "snap", "epoch": "E1", "seq": 8, "q": [["AAPL", 101.0, 100.0, 100.5, 101.5, 99.5, 1000, 1],
                                                    ["MSFT", 199.0, 200.0, 200.0, 200.0, 199.0, 500, 1]]}


def test_a_first_connection_subscribes_and_a_later_one_resumes():
    state = TableState()
    state.apply(HELLO)
    assert state.opening() == {"op": "sub", "symbols": "*"}
    assert state.apply(SNAP) is True
    assert state.opening() == {"op": "resume", "epoch": "E1", "seq": 8, "symbols": "*"}
    named = TableState(wanted=("MSFT", "AAPL"))
    named.apply(HELLO)
    assert named.opening() == {"op": "sub", "symbols": ["MSFT", "AAPL"]}


def test_quotes_fold_in_as_the_page_folds_them():
    state = TableState()
    state.apply(HELLO)
    state.apply(SNAP)
    assert state.apply({"t": "q", "seq": 9, "q": [["AAPL", 102.0, 1200, 2]]}) is True
    aapl = state.quotes["AAPL"]
    assert (aapl.last, aapl.high, aapl.low, aapl.volume, aapl.direction) == (102.0, 102.0, 99.5, 1200, 1)
    assert aapl.change == pytest.approx(2.0) and aapl.pct == pytest.approx(2.0)
    state.apply({"t": "q", "seq": 10, "q": [["AAPL", 98.0, 1300, 3]]})
    assert (aapl.low, aapl.direction) == (98.0, -1)
    assert state.seq == 10 and state.updates == 3
    assert state.paused == {"MSFT"}
    assert [sym for sym, _ in state.rows()] == ["AAPL", "MSFT"]


def test_a_new_epoch_forgets_the_seq_and_a_deleted_symbol_its_row():
    state = TableState()
    state.apply(HELLO)
    state.apply(SNAP)
    state.apply({**HELLO, "epoch": "E2"})
    assert state.seq == 0 and state.opening()["op"] == "sub"
    state.apply({"t": "sym", "symbols": HELLO["symbols"][:1]})
    assert "MSFT" not in state.quotes and [s for s, _ in state.rows()] == ["AAPL"]
    state.apply({"t": "err", "code": "unknown_symbol", "msg": "unknown symbol(s): NOPE"})
    assert state.errors == ["unknown_symbol: unknown symbol(s): NOPE"]
    assert state.apply({"t": "pong", "id": 1}) is False


def test_the_wire_tap_reads_the_upgrade_then_each_frame_header_across_reads():
    tap = WireTap()
    response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    small = b"\x81\x05hello"
    big = b"\x81\x7e\x01\x2c" + b"x" * 300
    stream = response + small + big
    records = []
    for i in range(0, len(stream), 7):  # in odd pieces, as reads come
        records += tap.feed(stream[i : i + 7])
    assert isinstance(records[0], HttpHead) and records[0].first_line == "HTTP/1.1 101 Switching Protocols"
    assert records[1:] == [
        FrameHeader(b"\x81\x05", True, 1, False, 5),
        FrameHeader(b"\x81\x7e\x01\x2c", True, 1, False, 300),
    ]
    masked = WireTap()
    masked.feed(b"GET / HTTP/1.1\r\n\r\n")
    (frame,) = masked.feed(b"\x81\x83abcd" + b"123")
    assert frame.masked and len(frame.header) == 6 and frame.payload_len == 3
    assert describe(frame, ">") == ["> TEXT   81 83 61 62 63 64               6 B header,      3 B payload masked"]
    assert describe(records[0], "<")[0] == "< HTTP/1.1 101 Switching Protocols"


def test_the_event_stream_parser_follows_the_standard():
    parser = EventStream()
    text = ": heartbeat\n\nevent: q\r\nid: E1:9\ndata: {\"t\":\"q\",\ndata: \"seq\":9}\n\nretry: 3000\nda"
    events = parser.feed(text)
    assert events == [Event("q", "E1:9", '{"t":"q",\n"seq":9}')]
    assert parser.retry_ms == 3000
    assert parser.feed('ta: {"t":"pong"}\n\n') == [Event("message", "E1:9", '{"t":"pong"}')]


def test_the_chunked_decoder_reassembles_a_body_split_anywhere():
    body = b"event: q\ndata: {}\n\n" * 3
    wire = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:33], body[33:])) + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(wire[i : i + 3]) for i in range(0, len(wire), 3))
    assert out == body and decoder.done


def test_urls_are_made_from_any_url_of_the_server():
    assert socket_url("ws://127.0.0.1:8000/ws/quotes/") == "ws://127.0.0.1:8000/ws/quotes/?v=1"
    assert socket_url("http://example.test:81") == "ws://example.test:81/ws/quotes/?v=1"
    assert socket_url("https://example.test/") == "wss://example.test/ws/quotes/?v=1"
    assert stream_url("ws://h:1/ws/quotes/", ("AAPL", "MSFT")) == "http://h:1/sse/quotes/?symbols=AAPL,MSFT"
    assert stream_url("wss://h/", ()) == "https://h/sse/quotes/"
    assert last_event_id("E1", 8) == "E1:8" and last_event_id("E1", 0) == "" and last_event_id("", 8) == ""
    assert json.loads(json.dumps(HELLO))  # fixtures are plain JSON
