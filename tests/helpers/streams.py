"""Assertions over what clients received."""

from __future__ import annotations

from tests.helpers.clients import Ws


async def q_frames(ws: Ws, count: int) -> dict[int, list]:
    """The next ``count`` ``q`` frames of ``ws``, by seq."""
    frames: dict[int, list] = {}
    while len(frames) < count:
        frame = await ws.until(lambda f: f["t"] == "q")
        frames[frame["seq"]] = frame["q"]
    return frames


def assert_same_stream(a: dict[int, list], b: dict[int, list], overlap: int = 5) -> None:
    """Two clients saw the same rows for every seq both saw, and at least ``overlap`` of them."""
    common = set(a) & set(b)
    assert len(common) >= overlap, f"only {len(common)} seqs in common"
    assert [seq for seq in sorted(common) if a[seq] != b[seq]] == []
