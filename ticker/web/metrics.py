"""Prometheus metrics of one server process (prometheus-client), served on ``/metrics``.

The hub counts what it does in ``Hub.stats`` and this module reads it at scrape time (a custom
collector: nothing is counted twice, nothing on the hot path knows Prometheus); the edge counts
what only it sees (frames refused, closes, handshakes refused) in counters of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..fanout import fastpath

if TYPE_CHECKING:
    from ..fanout.hub import Hub

REGISTRY = CollectorRegistry()
REFUSED = Counter("ticker_frames_refused", "Client frames refused, by reason", ["reason"], registry=REGISTRY)
CLOSES = Counter("ticker_closes", "WebSockets closed by the server, by close code", ["code"], registry=REGISTRY)
HANDSHAKES_REFUSED = Counter(
    "ticker_handshakes_refused", "WebSocket and event-stream handshakes refused, by cap (address, full)", ["cap"],
    registry=REGISTRY,
)


class HubCollector(Collector):
    """The hub's own counts, read when Prometheus scrapes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub, stats = self.hub, self.hub.stats
        yield GaugeMetricFamily("ticker_connections", "Clients of this process's hub", hub.client_count)
        yield GaugeMetricFamily("ticker_connections_held", "Clients held: sent nothing until they drain",
                                hub.held_count)
        yield CounterMetricFamily("ticker_frames_sent", "Frames fanned out to clients", stats.frames)
        yield CounterMetricFamily("ticker_bytes_sent", "Bytes of the frames fanned out", stats.bytes)
        yield CounterMetricFamily("ticker_batches", "Feed batches fanned out", stats.batches)
        yield CounterMetricFamily("ticker_fanout_seconds", "Time spent fanning batches out", stats.fanout_seconds)
        yield GaugeMetricFamily("ticker_feed_lag_seconds", "Age of the last batch when it arrived",
                                stats.lag_ms / 1000)
        yield GaugeMetricFamily("ticker_fanout_cost_seconds", "What a fan-out takes (wall time, moving average)",
                                stats.fanout_cost)
        yield GaugeMetricFamily("ticker_loop_late_seconds", "How late the event loop runs (recent maximum)",
                                stats.loop_late_ms / 1000)
        age = hub.feed_age()
        yield GaugeMetricFamily("ticker_feed_age_seconds", "Age of the newest quote", -1 if age is None else age)
        yield GaugeMetricFamily("ticker_feed_gaps", "Messages the feed's vendor lost this feed run (sequence gaps)",
                                stats.feed_gaps)
        yield GaugeMetricFamily("ticker_feed_source_down", "1 while the feed's source has lost the link to its vendor",
                                int(stats.source_down))
        yield GaugeMetricFamily("ticker_stale_symbols", "Symbols not updated by their source within its mark",
                                len(hub.stale(None)))
        yield CounterMetricFamily("ticker_resyncs", "Snapshots reloaded after a gap or an outage", stats.resyncs)
        yield CounterMetricFamily("ticker_batches_fenced", "Batches dropped: of a feed run older than the newest",
                                  stats.fenced)
        yield CounterMetricFamily("ticker_batches_conflated", "Batches held back and merged into the next fan-out",
                                  stats.conflated)
        held = CounterMetricFamily("ticker_clients_held", "Clients held, by reason", labels=["reason"])
        for reason, count in sorted(stats.held.items()):
            held.add_metric([reason.lower()], count)
        yield held
        yield CounterMetricFamily("ticker_clients_caught_up", "Held clients caught up with a snap", stats.caught_up)
        yield CounterMetricFamily("ticker_clients_dropped", "Clients held too long, closed as too slow", stats.dropped)
        links = CounterMetricFamily("ticker_fastpath", "daphne's fast path: writes and links", labels=["event"])
        for event, count in vars(fastpath.counters).items():
            links.add_metric([event], count)
        yield links


def registry_for(hub: Hub) -> CollectorRegistry:
    """A registry with the hub's collector (one per process: the services make it)."""
    registry = CollectorRegistry()
    registry.register(HubCollector(hub))
    return registry
