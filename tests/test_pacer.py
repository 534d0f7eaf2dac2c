"""The pacer: which batches go out as they are, which are held back and merged, and when.

Time is passed in: ``now`` here is a number the test chooses, no clock is read and nothing sleeps.
"""

from __future__ import annotations

import pytest

from ticker.fanout.pacer import COST_WEIGHT, LAG_MS, MAX_DUTY, QUEUED_SECONDS, Pacer

A, AB = frozenset({"A"}), frozenset({"A", "B"})
ON_TIME = 5.0  # ms: how late a batch from a healthy feed arrives


def fanned(pacer: Pacer, seq: int, made_ms: int, started: float, took: float) -> None:
    pacer.fanned(seq, made_ms, started, started + took)


def costly(took: float, fan_outs: int = 40) -> Pacer:
    """A pacer that saw ``fan_outs`` fan-outs of ``took`` seconds, the last of batch 7 made at 7000 ms,
    started at 7.0 s."""
    pacer = Pacer()
    for seq in range(1, fan_outs + 1):
        fanned(pacer, seq, seq * 1000, float(seq), took)
    fanned(pacer, 7, 7000, 7.0, took)
    return pacer


def test_a_cheap_hub_sends_every_batch_as_it_is():
    pacer = Pacer()
    for seq in range(1, 100):
        now = seq * 0.001
        assert not pacer.hold_back(A, seq, ON_TIME, now)  # a batch every millisecond
        assert pacer.follows_on(seq)
        fanned(pacer, seq, seq, now, 0.0)
    assert pacer.spacing == 0.0 and pacer.held == frozenset()


def test_the_cost_is_a_moving_average_of_what_fan_outs_take():
    pacer = Pacer()
    assert pacer.fanned(1, 1000, 10.0, 10.1) == pytest.approx(0.1)
    assert pacer.cost == pytest.approx(0.1 * COST_WEIGHT)
    for seq in range(2, 60):
        fanned(pacer, seq, seq * 1000, float(seq), 0.1)
    assert pacer.cost == pytest.approx(0.1) and pacer.spacing == pytest.approx(0.1 / MAX_DUTY)
    for seq in range(60, 120):  # cheap again: the cost decays
        fanned(pacer, seq, seq * 1000, float(seq), 0.0)
    assert pacer.cost < 0.001


def test_a_batch_made_too_soon_after_the_last_one_sent_is_held_back():
    pacer = costly(0.05)  # spacing: about 59 ms
    assert pacer.hold_back(A, 7000 + 20, ON_TIME, 7.07)
    assert not pacer.hold_back(AB, 7000 + 60, ON_TIME, 7.09)  # made over a spacing after batch 7
    assert pacer.held == AB  # what goes out merged


def test_a_batch_held_back_means_the_next_one_does_not_follow_on():
    """The merge shortcut: batch 9 changed every key batch 8 changed, and more; it still must not go
    out as a delta right after batch 7."""
    pacer = costly(0.05)
    assert pacer.follows_on(8) and pacer.hold_back(A, 7020, ON_TIME, 7.07)
    assert not pacer.hold_back(AB, 7100, ON_TIME, 7.12)
    assert not pacer.follows_on(9) and pacer.held == AB and pacer.seq == 7
    pacer.fanned(9, 7100, 7.12, 7.17)  # the merge went out
    assert pacer.follows_on(10) and pacer.held == frozenset()


def test_a_late_batch_that_arrives_right_after_a_fan_out_is_queued_behind_it():
    pacer = Pacer()
    fanned(pacer, 1, 1000, 10.0, 0.0)  # a pause: batch 1 went out at last...
    late = LAG_MS + 1
    assert pacer.hold_back(A, 1010, late, 10.0 + QUEUED_SECONDS / 2)  # ...and batch 2 waited behind it
    assert pacer.hold_back(A, 1020, late, 10.0 + QUEUED_SECONDS / 2)


def test_late_batches_that_arrive_apart_go_out_as_they_are():
    """Late because the feed or the layer was slow: merging would not make them fresher."""
    pacer = Pacer()
    fanned(pacer, 1, 1000, 10.0, 0.0)
    assert not pacer.hold_back(A, 1100, 2000.0, 10.0 + QUEUED_SECONDS * 2)
    assert not pacer.hold_back(A, 1100, LAG_MS - 1, 10.0)  # just after a fan-out, but not late


def test_a_batch_without_a_time_is_never_held_back():
    pacer = costly(0.05)
    assert not pacer.hold_back(A, 0, 0.0, 7.0)
    assert pacer.held == A  # still noted, for a merge if one is due


def test_a_flush_waits_until_a_fan_out_may_start_and_at_least_the_queueing_time():
    pacer = costly(0.2)  # the fan-out of batch 7 started at 7.0 s and ended at 7.2 s; spacing: 235 ms
    assert pacer.flush_delay(7.2) == pytest.approx(7.0 + pacer.spacing - 7.2)
    assert pacer.flush_delay(7.225) == pacer.flush_delay(7.5) == QUEUED_SECONDS
    assert not pacer.flush_due(7.0 + pacer.spacing - 0.001)  # too soon for what a fan-out costs
    assert pacer.flush_due(7.0 + pacer.spacing + 0.001)


def test_a_flush_waits_for_the_backlog_behind_a_fan_out():
    pacer = Pacer()
    fanned(pacer, 1, 1000, 10.0, 0.0)
    assert not pacer.flush_due(10.0 + QUEUED_SECONDS - 0.001)
    assert pacer.flush_due(10.0 + QUEUED_SECONDS + 0.001)
