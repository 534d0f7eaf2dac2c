"""The tick sources: the simulated market's maths and the CSV replay."""

import math
import statistics

import pytest

from ticker.feed.sources import CsvReplay, Listing, SimulatedMarket, Tick, read_replay, round_to_tick

LISTINGS = [Listing("AAA", 100.0), Listing("BBB", 20.0, tick_size=0.05), Listing("CCC", 3.0, tick_size=0.0001)]


def run(market: SimulatedMarket, seconds: float, step: float = 0.1) -> list[Tick]:
    market.ticks(0.0)
    return [tick for i in range(1, round(seconds / step) + 1) for tick in market.ticks(i * step)]


def test_market_emits_rate_ticks_per_second():
    market = SimulatedMarket(rate=50, seed=1)
    market.set_listings(LISTINGS, {})
    assert len(run(market, 10.0)) == pytest.approx(500, abs=1)


def test_same_seed_same_ticks():
    a, b = SimulatedMarket(rate=50, seed=42), SimulatedMarket(rate=50, seed=42)
    a.set_listings(LISTINGS, {})
    b.set_listings(LISTINGS, {})
    assert run(a, 2.0) == run(b, 2.0)


def test_prices_respect_the_tick_size_and_stay_positive():
    market = SimulatedMarket(rate=200, seed=3)
    market.set_listings(LISTINGS, {})
    for tick in run(market, 5.0):
        size = {"AAA": 0.01, "BBB": 0.05, "CCC": 0.0001}[tick.symbol]
        assert tick.price > 0
        assert abs(tick.price / size - round(tick.price / size)) < 1e-6
        assert tick.size >= 100 and tick.size % 100 == 0


def test_gbm_step_has_the_expected_log_return_spread():
    market = SimulatedMarket(seed=5, speed=1.0, drift=0.0, jump_prob=0.0)
    listing = Listing("AAA", 100.0, volatility=0.3)
    dt = 60.0
    returns = [math.log(market.step(listing, 100.0, dt) / 100.0) for _ in range(20000)]
    expected = 0.3 * math.sqrt(dt / (252 * 6.5 * 3600))
    assert statistics.pstdev(returns) == pytest.approx(expected, rel=0.03)
    assert statistics.fmean(returns) == pytest.approx(-0.5 * expected**2, abs=expected * 0.05)


def test_new_symbols_start_at_their_last_known_price():
    market = SimulatedMarket(rate=1000, seed=1, jump_prob=0)
    market.set_listings([Listing("AAA", 100.0)], {"AAA": 150.0})
    ticks = run(market, 0.1)
    assert ticks and all(140 < t.price < 160 for t in ticks)


def test_round_to_tick_never_goes_below_one_tick():
    assert round_to_tick(0.0001, 0.01) == 0.01
    assert round_to_tick(12.345678, 0.05) == 12.35


def write_csv(tmp_path, body: str):
    path = tmp_path / "replay.csv"
    path.write_text("ts,symbol,price,volume\n" + body)
    return path


def test_replay_reads_epoch_and_iso_times_sorted(tmp_path):
    rows = read_replay(write_csv(tmp_path, "2024-01-02T09:30:01+00:00,aaa,10.5,100\n1704187800,BBB,20,200\n"))
    assert [(r.at, r.tick) for r in rows] == [(0.0, Tick("BBB", 20.0, 200)), (1.0, Tick("AAA", 10.5, 100))]


@pytest.mark.parametrize(
    ("body", "message"),
    [("1,AAA,abc,100\n", ":2:"), ("1,AAA,-1,100\n", "positive"), ("", "no rows")],
)
def test_replay_rejects_bad_rows_with_their_line(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        read_replay(write_csv(tmp_path, body))


def test_replay_rejects_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,symbol,price\n1,AAA,1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_replay(path)


def test_replay_paces_by_speed_and_skips_inactive_symbols(tmp_path):
    rows = read_replay(write_csv(tmp_path, "0,AAA,1,1\n10,BBB,2,1\n20,AAA,3,1\n"))
    replay = CsvReplay(rows, speed=10)
    replay.set_listings([Listing("AAA", 1.0)], {})
    assert replay.ticks(100.0) == [Tick("AAA", 1.0, 1)]
    assert replay.ticks(100.5) == []  # BBB at file second 10 is not active
    assert replay.ticks(101.0) == []
    assert replay.ticks(102.0) == [Tick("AAA", 3.0, 1)]
    assert replay.finished


def test_replay_loops_when_asked(tmp_path):
    rows = read_replay(write_csv(tmp_path, "0,AAA,1,1\n1,AAA,2,1\n"))
    replay = CsvReplay(rows, speed=1, loop=True)
    replay.set_listings([Listing("AAA", 1.0)], {})
    prices = [t.price for t in replay.ticks(0.0) + replay.ticks(1.0) + replay.ticks(2.0) + replay.ticks(3.0)]
    assert prices == [1.0, 2.0, 1.0, 2.0]
    assert not replay.finished


def test_the_shipped_sample_replays(tmp_path):
    from ticker.feed.sources import SAMPLE_REPLAY

    rows = read_replay(SAMPLE_REPLAY)
    assert len(rows) > 100
    assert {r.tick.symbol for r in rows} >= {"AAPL", "MSFT"}


def test_the_header_names_each_source():
    from ticker.feed.marks import describe
    from ticker.feed.streams import Pushed
    from ticker.feed.vendors.alpaca import Alpaca
    from ticker.feed.vendors.coinbase import Coinbase

    assert describe(SimulatedMarket(rate=10, seed=1)) == "simulated market"
    assert describe(CsvReplay([], speed=10)) == "replay at 10×"
    assert describe(Pushed(Coinbase("ws://127.0.0.1:9"))) == "Coinbase Advanced Trade"
    assert describe(Pushed(Alpaca("k", "s", "ws://127.0.0.1:9", feed="sip"))) == "Alpaca (sip)"
