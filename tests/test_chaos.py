"""Chaos for a minute (benchmarks/chaos.py, the same code as `make chaos`): 50 page-like clients
through `make cluster`'s topology while an app server, the active feed and Redis are each
SIGKILLed once, 15 s apart. No client may show old prices as live, and every client is live
again within 5 s of every fault, with no seq gap. First, the page's rules the clients check
(benchmarks/pageclient.py ``Board``), without I/O.
"""

from __future__ import annotations

import pytest

from benchmarks import chaos
from benchmarks.pageclient import FRESH_MS, Board
from tests.helpers.sites import prepared_env
from ticker.clients.rules import DEAD_AFTER_MS, FEED_DOWN_AFTER_MS, PING_AFTER_MS, STALE_AFTER_MS

T0 = 1_800_000_000_000  # epoch ms


def synced_board(mark: int = T0, at: int = T0) -> Board:
    board = Board()
    board.opened(at)
    assert board.hello("e1", 0) == {"op": "sub", "symbols": "*"}
    board.frame(at)
    board.snap("e1", 10, mark)
    board.last_quote = at  # what the client records when it applies a snap or q
    return board


def test_pongs_do_not_keep_a_board_live_while_its_feed_is_silent():
    """The page goes stale ("feed down") 4 s after its last quote, though its pings are answered:
    no price is shown as fresh once it is 5 s old."""
    board = synced_board()
    now = T0
    while now < T0 + FRESH_MS + 3000:  # the feed is silent; the page pings every 2 s and gets its pong
        now += PING_AFTER_MS + 1
        assert board.due(now) == ("ping",)
        board.frame(now)  # the pong
        assert board.stale_shown_as_fresh(now) == 0
    assert not board.live(now) and board.live(T0 + FEED_DOWN_AFTER_MS)


def test_a_quiet_or_closed_board_shows_its_prices_as_stale_and_so_breaks_nothing():
    board = synced_board()
    assert board.live(T0 + FEED_DOWN_AFTER_MS) and not board.stale_shown_as_fresh(T0 + FEED_DOWN_AFTER_MS)
    assert not board.live(T0 + FEED_DOWN_AFTER_MS + 1)  # no quote for 4 s: greyed
    assert not board.live(T0 + STALE_AFTER_MS + 1)  # nothing at all for 5 s: greyed
    assert board.stale_shown_as_fresh(T0 + FRESH_MS + 1000) == 0
    assert board.due(T0 + DEAD_AFTER_MS + 1) == ("reconnect",)
    board.closed()
    assert not board.live(T0 + 1) and board.due(T0 + 1) == ()


def test_the_mark_is_the_newest_price_applied_and_a_new_epoch_replaces_it():
    board = synced_board(mark=T0 - 3000)
    board.quotes(11, T0 - 100)
    board.snap("e1", 11, T0 - 2000)  # a resync of older rows does not make the board older
    assert board.mark == T0 - 100
    board.snap("e2", 1, T0 - 50)
    assert (board.epoch, board.seq, board.mark) == ("e2", 1, T0 - 50)


def test_seq_must_follow_on_after_a_snapshot():
    board = synced_board()
    assert board.quotes(11, T0) is None
    assert board.quotes(13, T0) == (11, 13)
    board.snap("e1", 20, T0)
    assert board.quotes(21, T0) is None


def test_after_a_reconnect_the_board_resumes_unless_the_feed_restarted():
    board = synced_board()
    board.quotes(11, T0)
    board.closed()
    board.opened(T0 + 1)
    assert board.hello("e1", 2000) == {"op": "resume", "epoch": "e1", "seq": 11, "symbols": "*"}
    board.frame(T0 + 100)
    board.snap("e1", 12, T0 + 100)
    assert board.due(T0 + 1000) == ("ack",)  # asked for acks every 2 s: the seq moved
    assert board.due(T0 + 2000) == ()
    board.quotes(13, T0 + 2100)
    assert board.due(T0 + 3000) == ("ping", "ack")  # quiet since the snap; 2 s since the last ack
    board.closed()
    board.opened(T0 + 2)
    assert board.hello("e2", 0) == {"op": "sub", "symbols": "*"}


@pytest.mark.integration
def test_three_faults_no_client_shows_old_prices_as_live_and_all_are_live_again_within_5_s(
    tmp_path, seeded_database
):
    env = prepared_env(seeded_database, tmp_path, DJANGO_STATIC_ROOT=str(tmp_path / "static"))
    opts = chaos.parse(["--clients", "50", "--duration", "38", "--every", "11", "--seed", "20261202"])
    result = chaos.run(opts, tmp_path / "chaos", env)
    print("\n" + chaos.table(result))
    faults = result["faults"]
    assert sorted(f["kind"] for f in faults) == ["feed", "redis", "web"]
    assert all(f["restarted_s"] is not None for f in faults), faults  # the runner started each one again
    web = next(f for f in faults if f["kind"] == "web")
    assert web["cut"] >= 10  # the killed server's clients (about half) really were cut and came back
    assert result["totals"]["violations"] == 0, result["failures"]
    for fault in faults:
        assert fault["never"] == 0 and fault["late"] == 0, fault
        assert fault["live_again_s"]["max"] < chaos.LIVE_BUDGET_S, fault
    assert result["totals"]["gaps"] == 0, [f["gap_examples"] for f in faults]
    assert result["ok"], result["failures"]
    assert result["cluster"]["runner_exit"] == 0
