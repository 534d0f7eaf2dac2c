"""The epoch as the feed lease's fencing token (ticker/epochs.py), without I/O: a later run has
the greater epoch, never the same one, whatever the clock of the host that starts it."""

from __future__ import annotations

from ticker.epochs import new_epoch, older, term

T0 = 1_800_000_000_000  # epoch ms


def test_a_run_started_later_has_the_greater_epoch():
    first, second = new_epoch(now_ms=T0), new_epoch(now_ms=T0 + 1)
    assert older(first, second) and not older(second, first) and not older(first, first)
    assert term(first) == T0 and first.startswith(f"{T0:x}-")


def test_two_runs_never_share_an_epoch_and_are_still_ordered():
    """The random part: the same millisecond on two hosts (or a term a failover handed out
    twice) gives two epochs, and one of them is the older."""
    epochs = {new_epoch(now_ms=T0) for _ in range(200)}
    assert len(epochs) == 200
    a, b = sorted(epochs)[:2]
    assert older(a, b) != older(b, a)


def test_a_new_run_is_ordered_after_the_stored_one_whatever_its_clock_says():
    stored = new_epoch(now_ms=T0 + 60_000)  # the last run's host was a minute ahead
    mine = new_epoch(after=stored, now_ms=T0)
    assert older(stored, mine) and term(mine) == T0 + 60_001
    assert term(new_epoch(after=stored, now_ms=T0 + 120_000)) == T0 + 120_000  # no need to bump


def test_nothing_is_older_than_no_run_and_epochs_of_the_older_format_sort_first():
    epoch = new_epoch(now_ms=T0)
    assert older("", epoch) and not older(epoch, "")
    assert older("6b08bf2b-890093", epoch)  # seconds in hex, as before: a smaller term
    assert term("not-hex") == 0
