"""Protocol v1 parsing, validation and encoding: no server, no loop."""

import orjson
import pytest

from ticker import protocol as p


def assert_error(data, code: str) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_client_message(data)
    assert info.value.code == code, info.value
    return info.value


def test_sub_parses_symbols_upper_cased_and_deduplicated():
    assert p.parse_client_message('{"op":"sub","symbols":["aapl","MSFT","AAPL"]}') == p.Subscribe(("AAPL", "MSFT"))


def test_sub_star_means_the_whole_board():
    assert p.parse_client_message('{"op":"sub","symbols":"*"}') == p.Subscribe(None)


def test_unsub_parses():
    assert p.parse_client_message(b'{"op":"unsub","symbols":["BRK.B"]}') == p.Unsubscribe(("BRK.B",))


def test_resume_parses_and_defaults_to_all_symbols():
    assert p.parse_client_message('{"op":"resume","epoch":"e1","seq":12}') == p.Resume("e1", 12, None)


def test_ack_parses():
    assert p.parse_client_message('{"op":"ack","seq":41}') == p.Ack(41)


@pytest.mark.parametrize("ping_id", [7, 1.5, -2e3, "abc", None])  # "a number": any JSON number
def test_ping_keeps_its_id(ping_id):
    assert p.parse_client_message(orjson.dumps({"op": "ping", "id": ping_id})) == p.Ping(ping_id)


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '"sub"', "{}", '{"op":5}', '{"op":"sub"}', '{"op":"sub","symbols":[]}',
     '{"op":"sub","symbols":[1]}', '{"op":"sub","symbols":"AAPL"}', '{"op":"ping","id":[1]}',
     '{"op":"ping","id":true}', '{"op":"resume","epoch":1,"seq":1}', '{"op":"resume","epoch":"e","seq":-1}',
     '{"op":"resume","epoch":"e","seq":"3"}', '{"op":"ack"}', '{"op":"ack","seq":-2}', '{"op":"ack","seq":1.5}'],
)
def test_malformed_frames_are_bad_requests(frame):
    error = assert_error(frame, p.ERR_BAD_REQUEST)
    assert error.close_code is None


def test_unknown_op_is_named_in_the_error():
    error = assert_error('{"op":"buy","symbols":["AAPL"]}', p.ERR_UNKNOWN_OP)
    assert "buy" in str(error)


def test_a_string_that_cannot_be_a_ticker_is_an_unknown_symbol():
    assert_error('{"op":"sub","symbols":["AAPL","<script>"]}', p.ERR_UNKNOWN_SYMBOL)


def test_too_many_symbols_in_one_frame():
    symbols = [f"S{i}" for i in range(p.MAX_SYMBOLS + 1)]
    assert_error(orjson.dumps({"op": "sub", "symbols": symbols}), p.ERR_TOO_MANY_SYMBOLS)


def test_symbols_are_counted_once_duplicates_are_removed():
    symbols = ["AAPL", "aapl", " MSFT"] * p.MAX_SYMBOLS
    assert p.parse_client_message(orjson.dumps({"op": "sub", "symbols": symbols})) == p.Subscribe(("AAPL", "MSFT"))
    assert p.parse_symbols_param(",".join(symbols)) == ("AAPL", "MSFT")
    assert p.parse_symbols_param("*") is None and p.parse_symbols_param("") is None


def test_an_oversized_frame_that_reaches_the_application_asks_for_close_4009():
    frame = '{"op":"sub","symbols":["AAPL"],"pad":"' + "x" * p.MAX_FRAME_BYTES + '"}'
    error = assert_error(frame, p.ERR_TOO_BIG)
    assert error.close_code == p.WS_4009_TOO_BIG


def test_frame_size_is_counted_in_bytes_not_characters():
    frame = '{"op":"ping","id":"' + "é" * (p.MAX_FRAME_BYTES // 2) + '"}'
    assert len(frame) < p.MAX_FRAME_BYTES
    assert_error(frame, p.ERR_TOO_BIG)


def test_hello_announces_version_epoch_seq_node_symbols_market_and_limits():
    hello = orjson.loads(p.encode_hello("e1", 5, "web1:1", [{"s": "AAPL"}], 2000, source="simulated market"))
    assert hello == {"t": "hello", "v": 1, "epoch": "e1", "seq": 5, "node": "web1:1",
                     "symbols": [{"s": "AAPL"}], "market": {"state": "open", "reason": ""}, "limits": p.limits(2000),
                     "source": "simulated market"}
    assert hello["limits"]["ack_ms"] == 2000


def test_quotes_frame_joins_pre_encoded_fragments_into_valid_json():
    rows = [["AAPL", 1.5, 1.0, 1.0, 2.0, 1.0, 300, 1000], ["MSFT", 2.25, 2.0, 2.0, 2.5, 2.0, 100, 1001]]
    frame = p.encode_quotes(9, [p.short_row(r) for r in rows])
    assert orjson.loads(frame) == {"t": "q", "seq": 9, "q": [["AAPL", 1.5, 300, 1000], ["MSFT", 2.25, 100, 1001]]}


def test_empty_quotes_frame_is_valid_json():
    assert orjson.loads(p.encode_quotes(3, [])) == {"t": "q", "seq": 3, "q": []}


def test_snap_err_pong_and_sym_frames():
    row = ["AAPL", 1.5, 1.0, 1.0, 2.0, 1.0, 300, 1000]
    assert orjson.loads(p.encode_snap("e1", 4, [p.full_row(row)])) == {"t": "snap", "epoch": "e1", "seq": 4, "q": [row]}
    merged = orjson.loads(p.encode_snap("e1", 4, [p.full_row(row)], since=2))
    assert merged == {"t": "snap", "epoch": "e1", "seq": 4, "since": 2, "q": [row]}
    assert orjson.loads(p.encode_err("x", "y")) == {"t": "err", "code": "x", "msg": "y"}
    assert orjson.loads(p.encode_pong(7)) == {"t": "pong", "id": 7}
    assert orjson.loads(p.encode_symbols([{"s": "A"}])) == {
        "t": "sym", "symbols": [{"s": "A"}], "market": {"state": "open", "reason": ""}, "source": ""}
    halted = {"state": "halted", "reason": "news pending"}
    assert orjson.loads(p.encode_symbols([], halted))["market"] == halted
    assert orjson.loads(p.encode_symbols([], source="Alpaca (iex)"))["source"] == "Alpaca (iex)"


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = p.TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.first_refusal
    assert bucket.take(0.1)  # one token back after 1/rate seconds
    assert not bucket.flooding


def test_token_bucket_calls_a_flood_flooding_however_it_is_paced():
    """Spending a token between refusals (the old dodge) does not reset the budget."""
    bucket = p.TokenBucket(rate=10, burst=1, now=0.0, budget=50, window=10.0)
    now, refused = 0.0, 0
    while not bucket.flooding:
        now += 0.005  # 200 frames a second: one in twenty gets a token
        refused += not bucket.take(now)
        assert now < 1.0, "a paced flood was never called a flood"
    assert refused == 51


def test_refusals_spread_over_windows_are_no_flood():
    bucket = p.TokenBucket(rate=1, burst=1, now=0.0, budget=5, window=1.0)
    for second in range(10):
        bucket.take(float(second))
        for _ in range(5):  # five refused a second, each second a new window
            bucket.take(second + 0.5)
        assert not bucket.flooding


def test_a_cached_snap_row_holds_its_bytes_not_the_encoders_buffer():
    """orjson ≥ 3.12 leaves about 4 KiB behind every small result: a row kept in the hub's cache
    must cost its own size."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [p.full_row(["AAPL", 189.23 + i, 188.1, 187.5, 190.2, 186.9, 12345678, 1764766000000])
                for i in range(1000)]
        per_row = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_row < 256, f"{per_row:.0f} B per cached row"
