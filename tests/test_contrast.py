"""Text contrast of the board's palettes (ticker/static/ticker/board.css), light and dark: every
text colour on every background it sits on reaches WCAG 2's 4.5:1 for normal text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parent.parent / "ticker" / "static" / "ticker" / "board.css"
TEXT = ["--text", "--text-strong", "--muted", "--faint", "--up", "--down", "--amber", "--stale", "--accent"]
BACKGROUNDS = ["--panel", "--panel-head", "--row-alt", "--row-hover", "--row-selected"]
MINIMUM = 4.5


def palettes() -> dict[str, dict[str, str]]:
    css = CSS.read_text()
    light = re.search(r"^:root \{(.*?)^\}", css, re.S | re.M)
    dark = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", css, re.S)
    assert light and dark, "board.css: no :root block, or no dark one"

    def variables(block: str) -> dict[str, str]:
        return dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{6})\s*;", block))

    base = variables(light.group(1))
    return {"light": base, "dark": {**base, **variables(dark.group(1))}}


def luminance(hex_colour: str) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def ratio(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_colour_reads_at_4_5_to_1_on_every_background(scheme):
    colours = palettes()[scheme]
    low = []
    for fg in TEXT:
        figures = {bg: ratio(colours[fg], colours[bg]) for bg in BACKGROUNDS}
        print(f"{scheme} {fg} {colours[fg]}: " + ", ".join(f"{bg} {r:.2f}" for bg, r in figures.items()))
        low += [f"{fg} on {bg}: {r:.2f}" for bg, r in figures.items() if r < MINIMUM]
    assert not low, f"{scheme}: under {MINIMUM}:1: {low}"


def test_the_old_faint_grey_would_fail():
    assert ratio("#4a5563", "#10151c") < MINIMUM
