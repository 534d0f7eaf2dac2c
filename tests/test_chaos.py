"""Chaos in short (benchmarks/chaos.py, the same code as `make chaos`), page-like clients through
`make cluster`'s topology: 50 while an app server and the active feed are each SIGKILLed once,
10 s apart; 100 while the Redis primary is SIGKILLed (a Sentinel failover). No client may show
old prices as live, and every client is live again within 5 s of every fault (of the layer's
return, for the primary), with no seq gap and no epoch going back. First, the page's rules the
clients check (benchmarks/pageclient.py ``Board``), without I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import chaos
from benchmarks.pageclient import FRESH_MS, Board
from tests.helpers.figures import figure
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seeded_database) -> Iterator[chaos.RunnerCluster]:
    """`make cluster`'s topology through its runner, shared by the chaos cases below."""
    tmp = tmp_path_factory.mktemp("chaos")
    env = prepared_env(seeded_database, tmp, DJANGO_STATIC_ROOT=str(tmp / "static"))
    with chaos.running(tmp / "chaos", 2, env) as site:
        yield site
    assert site.exit_code == 0, site.output()[-3000:]


def chaos_in(cluster: chaos.RunnerCluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = chaos.run_loop(chaos.chaos(chaos.parse(list(args)), cluster))
    print("\n" + chaos.table(result))
    return result


@pytest.mark.integration
def test_a_server_and_a_feed_killed_no_client_shows_old_prices_as_live_and_all_are_live_again_within_5_s(cluster):
    result = chaos_in(cluster, "--clients", "50", "--duration", "25", "--every", "10", "--kinds", "web,feed",
                      "--seed", "20261202")
    faults = result["faults"]
    assert sorted(f["kind"] for f in faults) == ["feed", "web"]
    assert all(f["restarted_s"] is not None for f in faults), faults  # the runner started each one again
    web = next(f for f in faults if f["kind"] == "web")
    assert web["cut"] >= 10  # the killed server's clients (about half) really were cut and came back
    assert result["totals"]["violations"] == 0, result["failures"]
    for fault in faults:
        assert fault["never"] == 0 and fault["late"] == 0, fault
        assert fault["live_again_s"]["max"] < chaos.LIVE_BUDGET_S, fault
    assert result["totals"]["gaps"] == 0, [f["gap_examples"] for f in faults]
    assert result["ok"], result["failures"]


@pytest.mark.integration
def test_a_killed_redis_primary_fails_over_and_every_client_is_live_again_within_5_s(cluster):
    """SIGKILL to the primary under 100 clients: the sentinels promote the replica, the killed node
    comes back as its replica, one feed is active (the lease's holder), no client shows an old
    price as live or goes back to an older epoch."""
    result = chaos_in(cluster, "--clients", "100", "--duration", "11", "--every", "2", "--kinds", "redis",
                      "--seed", "20261203")
    (fault,) = result["faults"]
    assert fault["kind"] == "redis" and fault["restarted_s"] is not None
    roles = cluster.roles()
    assert roles.pop(fault["target"]) == "slave" and list(roles.values()) == ["master"]
    assert fault["never"] == 0 and fault["late"] == 0, fault
    assert result["totals"]["violations"] == 0, result["failures"]
    assert result["totals"]["gaps"] == 0 and result["totals"]["epochs_back"] == 0, fault
    assert len(result["active_feeds"]) == 1
    assert result["ok"], result["failures"]
    figure("failover: the layer back after the primary's SIGKILL", fault["failover_s"], target=3.0,
           limit=chaos.FAILOVER_BUDGET_S + 0.01)
    figure("failover: every client live again after the layer is back", fault["live_after_failover_s"]["max"],
           target=2.0, limit=chaos.LIVE_BUDGET_S)
