"""``/metrics`` of a real daphne: Prometheus text that counts what happened, loopback only."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.clients import Ws
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_connections_frames_refusals_and_closes(embedded_site):
    before = await asyncio.to_thread(scrape, embedded_site.url)
    ws = await Ws.open(embedded_site.ws_url)
    await ws.send({"op": "sub", "symbols": "*"})
    await ws.until(lambda f: f["t"] == "q")
    await ws.conn.send("not json")
    assert (await ws.until(lambda f: f["t"] == "err"))["code"] == "bad_request"
    await ws.send({"op": "ping", "id": 1})
    await ws.until(lambda f: f["t"] == "pong")

    async def counted() -> dict:
        now = await asyncio.to_thread(scrape, embedded_site.url)
        return now if now[("ticker_frames_sent_total", ())] > before.get(("ticker_frames_sent_total", ()), 0) else {}

    now = await eventually(counted, 5, 0.1, "frames to be counted")
    assert now[("ticker_connections", ())] >= 1
    assert now[("ticker_batches_total", ())] > before[("ticker_batches_total", ())]
    assert now[("ticker_bytes_sent_total", ())] > before[("ticker_bytes_sent_total", ())]
    assert now[("ticker_frames_refused_total", (("reason", "bad_request"),))] >= 1
    assert 0 <= now[("ticker_feed_lag_seconds", ())] < 5
    assert now[("ticker_fastpath_total", (("event", "socket_writes"),))] > 0
    await ws.close()
