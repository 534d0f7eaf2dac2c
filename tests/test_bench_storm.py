"""The bench's storm case (benchmarks/storm.py, `make bench-storm`): steady clients, then as many more
at once. Its figures from the clients' counters, its target, its place in the plan and the report,
the baselines' subscriptions, without I/O; then a small storm against a real daphne."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import run, storm
from benchmarks.baseline.market import Batch, Subscriptions
from benchmarks.report import END, STORM_BEGIN, write_report
from benchmarks.wsclient import Group
from tests.helpers.figures import figure
from tests.helpers.procs import PYTHON, ROOT
from tests.helpers.sites import embedded

NOW = 1_800_000_000_000  # epoch ms


def steady(*ages_ms: int) -> dict:
    """The counters of steady clients that got one 10-row frame at each of these ages."""
    group = Group()
    for age in ages_ms:
        group.record_same(10, NOW - age, NOW)
    return group.summary()


def test_the_storm_splits_the_steady_clients_freshness_at_its_start_and_counts_lost_newcomers_apart():
    outcomes = [(100.0, 150.0, None), (200.0, 300.0, None), (300.0, 900.0, None), (None, None, "timeout"),
                (400.0, None, storm.NOT_LIVE)]
    figures = storm.summary(steady(*[10] * 99, 50), steady(*[20] * 98, 700, 800), outcomes, [0.9, 1.25], 30.0)
    assert figures["steady_before_ms"]["p99"] == 10 and figures["steady_before_ms"]["max"] == 50
    assert figures["steady_during_ms"]["p99"] == 700 and figures["steady_during_ms"]["rows"] == 1000
    assert figures["window_s"] == 1.25  # the last client process to end its window
    assert figures["hello_ms"] == {"p50": 300.0, "p99": 400.0, "max": 400.0}  # the four that got a hello
    assert figures["live_ms"] == {"p50": 300.0, "p99": 900.0, "max": 900.0}  # the three that went live
    assert (figures["newcomers"], figures["live"], figures["lost"]) == (5, 3, 2)
    assert figures["lost_by"] == {"timeout": 1, storm.NOT_LIVE: 1}
    assert figures["steady_closed"] == 0


def test_a_storm_meets_its_target_with_the_steady_p99_at_most_250_ms_every_newcomer_live_in_3_s_none_lost():
    figures = storm.summary(steady(10), steady(*[100] * 98, 250, 250), [(100.0, 3000.0, None)], [3.0], 30.0)
    assert figures["steady_during_ms"]["p99"] == 250 and storm.met(figures)
    assert not storm.met(storm.summary(steady(10), steady(*[100] * 98, 251, 251), [(100.0, 3000.0, None)],
                                       [3.0], 30.0))
    assert not storm.met(storm.summary(steady(10), steady(100), [(100.0, 3001.0, None)], [3.1], 30.0))
    assert not storm.met(storm.summary(steady(10), steady(100), [(100.0, 200.0, None), (None, None, "http 503")],
                                       [0.2], 30.0))
    assert not storm.met(storm.summary(steady(10), steady(), [(None, None, "timeout")], [30.0], 30.0))


def test_the_plan_runs_a_storm_on_ours_plain_websockets_and_picows_only():
    opts = run.parse_args(["--paths", "ours-daphne,socketio,picows", "--clients=", "--watchlist-clients=",
                           "--slow-clients", "0", "--storm-clients", "200", "--storm-newcomers", "300"])
    runs = run.plan(opts, opts.paths)
    assert [(r.path, r.case, r.clients) for r in runs] == [("ours-daphne", "storm", 200), ("picows", "storm", 200)]
    assert runs[0].extra == ["--storm", "300", "--storm-deadline", "30.0"]
    assert runs[0].duration == 10 and runs[0].after == 30  # measured 10 s before the storm; 30 s for it
    assert all(r.case != "storm" for r in run.plan(run.parse_args(["--storm-clients", "0"]), ["picows"]))


def storm_record(path: str, p99: int, lost: dict[str, int]) -> dict:
    outcomes = [(500.0, 600.0, None)] + [(None, None, reason) for reason, n in lost.items() for _ in range(n)]
    return {
        "session": "20261203T170000Z", "date": "2026-12-03T17:00:00+00:00", "git": "abc", "suite": "fanout",
        "bench_command": "python -m benchmarks.run --paths …", "results": "benchmarks/results/2026-12-03.jsonl",
        "cores": "pinned", "machine": {"cpu": "cpu", "cores": 2, "python": "3.11.7"},
        "settings": {"connect_rate": 500, "storm_before": 10, "storm_deadline": 30},
        "path": path, "case": "storm", "n": 2500, "repeat": 0, "holds": False, "collapsed": False,
        "loadavg_before": [0.4, 0.5, 0.6], "server": {"cpu_pct": 80.0},
        "storm": storm.summary(steady(10), steady(p99), outcomes, [2.5], 30.0),
    }


def test_the_report_puts_the_storm_table_right_after_the_steady_tables(tmp_path):
    report = tmp_path / "PERFORMANCE.md"
    report.write_text(f"# Performance\n\nby hand\n\n<!-- bench:begin -->\nsteady tables\n{END}\n\n## Later, by hand\n")
    write_report([storm_record("ours-daphne", 3300, {"timeout": 150}), storm_record("picows", 70, {})], report)
    text = report.read_text()
    assert text.index(END) < text.index(STORM_BEGIN) < text.index("## Later, by hand")
    assert "steady tables" in text  # the steady part is not regenerated from a storm's records
    rows = [line for line in text.splitlines() if line.startswith("| ours") or line.startswith("| picows")]
    assert rows[0].split(" | ")[1:8] == ["2,500 + 151", "10", "3,300", "2.5", "0.50 / 0.50 / 0.50",
                                         "0.60 / 0.60 / 0.60", "150 (150 timeout)"]
    assert rows[0].endswith("| **missed** |") and rows[1].endswith("| met |")


def test_the_baselines_send_the_whole_board_one_frame_and_each_watchlist_its_own():
    subs: Subscriptions[str] = Subscriptions(["AAPL", "MSFT", "NVDA"])
    for conn in ("a", "b", "c", "d"):
        subs.join(conn)
    assert subs.handle("b", b'{"op":"sub","symbols":["aapl","ZZZZ"]}') is None
    subs.handle("c", b'{"op":"sub","symbols":["AAPL"]}')
    subs.handle("d", b'{"op":"sub","symbols":["MSFT"]}')
    assert json.loads(subs.handle("a", b'{"op":"ping","id":7}') or b"") == {"t": "pong", "id": 7}
    assert subs.handle("a", b"not json") is None and subs.handle("a", b"[1]") is None
    batch = Batch(5, [], {"AAPL": b'["AAPL",1.0,10,1]', "NVDA": b'["NVDA",2.0,20,1]'})
    frames = {frame: set(conns) for frame, conns in subs.frames(batch)}
    assert frames == {'{"t":"q","seq":5,"q":[["AAPL",1.0,10,1],["NVDA",2.0,20,1]]}': {"a"},
                      '{"t":"q","seq":5,"q":[["AAPL",1.0,10,1]]}': {"b", "c"}}  # d's MSFT did not trade
    subs.handle("b", b'{"op":"sub","symbols":"*"}')
    subs.leave("c")
    subs.leave("d")
    assert subs.board == {"a", "b"} and not subs.watch and not subs.groups


@pytest.mark.integration
def test_a_storm_of_20_on_20_steady_clients_of_daphne_brings_every_newcomer_live(seeded_database, tmp_path):
    with embedded(seeded_database, tmp_path, TICKER_LIMIT_EXEMPT="127.0.0.0/8,::1") as site:
        done = subprocess.run([PYTHON, "-m", "benchmarks.loadclient", "--url", site.ws_url, "--clients", "20",
                               "--storm", "20", "--duration", "0.5", "--warmup", "0.2", "--storm-deadline", "20",
                               "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    figures = result["storm"]
    assert result["connected"] == 20 and result["errors"]["total"] == 0, result["errors"]
    assert (figures["newcomers"], figures["live"], figures["lost"]) == (20, 20, 0), figures["lost_by"]
    assert figures["steady_before_ms"]["rows"] > 0  # the steady clients read through the half second before it
    assert figures["hello_ms"]["max"] <= figures["live_ms"]["max"] <= figures["window_s"] * 1000 + 10
    assert result["newcomers"]["clients"] == 20 and result["newcomers"]["gaps"] == 0
    figure("storm of 20 on 20 steady (daphne): the last newcomer live", figures["live_ms"]["max"] / 1000,
           target=1, limit=20)
