"""The client rules, stated twice (once per language) and held equal: the page's
ticker/static/ticker/rules.js against ticker/clients/rules.py, read from the JavaScript source.
Then what each rule says, on the Python side."""

from __future__ import annotations

import re

import pytest

from tests.helpers.procs import ROOT
from ticker import protocol
from ticker.clients import rules

PAGE = ROOT / "ticker/static/ticker"
RULES_JS = PAGE / "rules.js"
PYTHON_CLIENTS = [ROOT / "ticker/clients", ROOT / "benchmarks/pageclient.py", ROOT / "tests/helpers/clients.py"]
# Derived from the others on both sides, so compared by its formula, not its value.
DERIVED = {"FAILURES_FOR_CAP": "Math.ceil(Math.log2(RETRY_CAP_MS / RETRY_BASE_MS))"}
EXPORT = re.compile(r"^export const ([A-Z][A-Z0-9_]*) = (.+);", re.M)


def js_value(text: str) -> int | frozenset[int]:
    """A constant of rules.js: a number, or a Set of numbers."""
    if (found := re.fullmatch(r"new Set\(\[([\d,\s]*)\]\)", text)) is not None:
        return frozenset(int(n) for n in found.group(1).split(",") if n.strip())
    if re.fullmatch(r"\d+", text):
        return int(text)
    raise AssertionError(f"rules.js: {text!r} is neither a number nor a Set of numbers")


def page_rules(source: str | None = None) -> dict[str, int | frozenset[int]]:
    text = RULES_JS.read_text() if source is None else source
    return {name: js_value(value.strip()) for name, value in EXPORT.findall(text)}


def python_rules() -> dict[str, object]:
    return {name: value for name, value in vars(rules).items()
            if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and name not in DERIVED}


def test_the_page_and_the_python_clients_state_the_same_rules():
    page, python = page_rules(), python_rules()
    assert sorted(page) == sorted(python), "a rule stated on one side only"
    assert page == python
    assert page["PROTOCOL_VERSION"] == protocol.VERSION
    assert page["CLOSE_NEEDS_A_FIX"] >= {protocol.WS_4008_POLICY, protocol.WS_4009_TOO_BIG}
    assert page["CLOSE_RECONNECT_AT_ONCE"] == {protocol.WS_1012_SERVICE_RESTART}
    source = RULES_JS.read_text()
    for name, formula in DERIVED.items():
        assert f"const {name} = {formula};" in source


def test_a_change_on_one_side_alone_is_caught(monkeypatch):
    """The comparison sees a rule changed on the page alone, or in Python alone."""
    source = RULES_JS.read_text()
    for before, after in [("RETRY_CAP_MS = 15000;", "RETRY_CAP_MS = 16000;"), ("4008, 4009", "4008"),
                          ("PROTOCOL_VERSION = 1;", "PROTOCOL_VERSION = 2;")]:
        assert before in source
        assert page_rules(source.replace(before, after)) != python_rules()
    assert "FEED_DOWN_AFTER_MS" not in page_rules(source.replace("export const FEED_DOWN", "const FEED_DOWN"))
    monkeypatch.setattr(rules, "STALE_AFTER_MS", 6000)
    assert page_rules() != python_rules()
    with pytest.raises(AssertionError):
        js_value("2 * 1000")  # a value the comparison cannot read is refused, not skipped


def test_no_other_module_states_a_rule_of_its_own():
    """One statement per language: no other page module or Python client declares a rule's name,
    and one page module alone builds the socket's URL."""
    names = set(page_rules()) | set(DERIVED)
    declared = re.compile(r"\bconst (" + "|".join(sorted(names)) + r")\b")
    for path in sorted(PAGE.glob("*.js")):
        if path != RULES_JS:
            assert not declared.search(path.read_text()), f"{path.name} states a rule of its own"
    assert [p.name for p in sorted(PAGE.glob("*.js")) if "/ws/quotes/" in p.read_text()] == ["link.js"]
    assigned = re.compile(r"^\s*(" + "|".join(sorted(names)) + r")\s*=", re.M)
    for root in PYTHON_CLIENTS:
        for path in [root] if root.is_file() else sorted(root.glob("*.py")):
            if path != ROOT / "ticker/clients/rules.py":
                assert not assigned.search(path.read_text()), f"{path.name} states a rule of its own"


@pytest.mark.parametrize("code", [1008, 1009, 4008, 4009])
def test_a_close_that_needs_a_fix_waits_the_full_cap(code):
    assert rules.on_close(code) is rules.OnClose.NEEDS_A_FIX
    assert rules.failures_after_close(code, 0) == rules.FAILURES_FOR_CAP
    assert rules.backoff_delay(rules.FAILURES_FOR_CAP, lambda: 0.999) == pytest.approx(0.999 * 15.0)
    assert rules.failures_after_close(code, 9) == 9


def test_a_restart_close_reconnects_at_once_within_the_jitter_and_starts_the_count_over():
    code = protocol.WS_1012_SERVICE_RESTART
    assert rules.on_close(code) is rules.OnClose.RESTART
    assert rules.failures_after_close(code, 4) == 0
    assert rules.reconnect_delay(code, 4, lambda: 0.999) == pytest.approx(0.999 * rules.RESTART_JITTER_MS / 1000)
    assert rules.RESTART_JITTER_MS == protocol.RESTART_JITTER_MS  # what the server draws an SSE retry: from


def test_an_event_stream_retry_hint_is_waited_as_it_is():
    assert rules.reconnect_delay(None, 3, retry_ms=120) == pytest.approx(0.12)


@pytest.mark.parametrize("code", [None, 0, 1000, 1001, 1006, 1011, 1013, 4013])
def test_every_other_close_reconnects_after_the_backoff(code):
    assert rules.on_close(code) is rules.OnClose.BACKOFF
    assert rules.failures_after_close(code, 2) == 2
    assert rules.reconnect_delay(code, 3, lambda: 0.5) == rules.backoff_delay(3, lambda: 0.5)


def test_the_backoff_is_full_jitter_below_a_doubling_cap_in_seconds():
    assert rules.backoff_delay(0, lambda: 0.999) < rules.RETRY_BASE_MS / 1000
    assert rules.backoff_delay(3, lambda: 0.5) == pytest.approx(2.0)
    assert rules.backoff_delay(20, lambda: 0.999) < rules.RETRY_CAP_MS / 1000
    assert rules.RETRY_BASE_MS * 2**rules.FAILURES_FOR_CAP >= rules.RETRY_CAP_MS > (
        rules.RETRY_BASE_MS * 2 ** (rules.FAILURES_FOR_CAP - 1))


def test_a_client_resumes_only_from_a_position_in_the_hellos_epoch():
    assert rules.opening("E1", 8, "E1", "*") == {"op": "resume", "epoch": "E1", "seq": 8, "symbols": "*"}
    assert rules.opening("E1", 8, "E2", ["AAPL"]) == {"op": "sub", "symbols": ["AAPL"]}
    assert rules.opening("E1", 0, "E1", "*") == {"op": "sub", "symbols": "*"}
    assert rules.opening("", 8, "", "*") == {"op": "sub", "symbols": "*"}
    assert rules.seq_after_hello("E1", 8, "E2") == 0  # the feed restarted
    assert rules.seq_after_hello("E1", 8, "E1") == 8 and rules.seq_after_hello("", 8, "E1") == 8
    assert rules.follows_on(7, 8) and not rules.follows_on(7, 9) and not rules.follows_on(7, 7)


def test_the_stale_marks():
    t = 1_000_000
    assert rules.shows_live(t + rules.FEED_DOWN_AFTER_MS, t + rules.FEED_DOWN_AFTER_MS, t)
    assert not rules.shows_live(t + rules.FEED_DOWN_AFTER_MS + 1, t + rules.FEED_DOWN_AFTER_MS, t)  # feed down
    assert not rules.shows_live(t + rules.STALE_AFTER_MS + 1, t, t + rules.STALE_AFTER_MS)  # nothing at all
    assert rules.FEED_DOWN_AFTER_MS < rules.STALE_AFTER_MS
