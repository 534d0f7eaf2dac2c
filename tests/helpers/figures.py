"""Figures the tests measure: each recorded against its target, held only to a generous limit.

A timed promise (a standby takes over within 3 s, an admin change reaches pages within a
second) is a figure, not a pass mark: how long it takes depends on the machine and on what
else runs on it. ``figure`` records the value with its target for the run's summary (printed
at the end of every run, ``over target`` where it missed) and fails the test only past a hard
limit far above the target: the behaviour broken, not the machine slow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    target: float
    limit: float
    unit: str

    @property
    def over_target(self) -> bool:
        return self.value > self.target


FIGURES: list[Figure] = []  # the run's, gathered from each test's report (``collect``)
KEY = "figure"
# The running test's user properties (set by conftest for each test): they travel in its
# report, so the figures of tests run by another process (pytest-xdist) reach the summary too.
measuring: list[tuple[str, object]] = []


def figure(name: str, value: float, *, target: float, limit: float, unit: str = "s") -> float:
    """Record ``value`` against ``target``; fail only when it reaches ``limit``."""
    assert limit > target, "a limit is the generous bound above the target"
    measuring.append((KEY, (name, value, target, limit, unit)))
    assert value < limit, f"{name}: {value:.3g} {unit}, past the hard limit of {limit} {unit} (target {target})"
    return value


def collect(properties: list[tuple[str, object]]) -> None:
    """Take the figures out of a finished test's user properties."""
    FIGURES.extend(Figure(*fields) for key, fields in properties if key == KEY)


def summary() -> list[str]:
    """The run's figures as lines, in the order they were measured."""
    return [f"{f.name}: {f.value:.3g} {f.unit} (target {f.target}, limit {f.limit})"
            + ("  over target" if f.over_target else "") for f in FIGURES]
