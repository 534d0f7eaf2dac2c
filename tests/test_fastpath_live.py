"""Daphne's fast path on real connections: what it reads exists in the locked versions, and
under TLS it never writes to the socket itself."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request

import pytest
import trustme
import websockets

from tests.helpers.clients import Ws, get_json
from tests.helpers.procs import start_daphne
from tests.helpers.sites import prepared_env

pytestmark = pytest.mark.integration


async def test_the_locked_daphne_autobahn_and_twisted_have_what_the_fast_path_reads(embedded_site):
    ws = await Ws.open(embedded_site.ws_url)
    await ws.send({"op": "sub", "symbols": "*"})
    await ws.until(lambda f: f["t"] == "q")
    _, detail = await asyncio.to_thread(get_json, embedded_site.url + "/internal/status")
    await ws.close()
    refusals = [line for line in embedded_site.procs["web"].output().splitlines() if "fast path" in line]
    assert detail["fastpath"]["refused"] == 0 and detail["direct"] >= 1, refusals  # the log names what is missing
    assert detail["fastpath"]["demoted"] == 0, refusals


async def test_under_tls_every_frame_arrives_intact_and_no_raw_socket_write_happens(tmp_path, seeded_database):
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    context = ssl.create_default_context()
    authority.configure_trust(context)
    env = prepared_env(seeded_database, tmp_path, TICKER_FEED_RATE="100")
    web = await asyncio.to_thread(start_daphne, tmp_path / "logs", env, "tls", "daphne", (cert_file, key_file), context)
    try:
        async with websockets.connect(f"wss://127.0.0.1:{web.port}/ws/quotes/", ssl=context) as conn:
            hello = json.loads(await conn.recv())
            await conn.send(json.dumps({"op": "sub", "symbols": "*"}))
            snap = json.loads(await conn.recv())
            assert snap["t"] == "snap" and len(snap["q"]) == len(hello["symbols"])
            seqs = []
            while len(seqs) < 20:
                frame = json.loads(await conn.recv())  # a torn or clear-text frame would not parse
                if frame["t"] == "q":
                    seqs.append(frame["seq"])
            assert seqs == list(range(seqs[0], seqs[0] + 20))
            with_detail = await asyncio.to_thread(status_of, f"https://127.0.0.1:{web.port}", context)
        counters = with_detail["fastpath"]
        assert with_detail["direct"] == 1 and counters["transport_writes"] >= 20
        assert counters["socket_writes"] == 0  # the socket never saw a frame that TLS had not wrapped
    finally:
        web.stop()


def status_of(base: str, context: ssl.SSLContext) -> dict:
    with urllib.request.urlopen(base + "/internal/status", timeout=10, context=context) as resp:
        return json.loads(resp.read())
