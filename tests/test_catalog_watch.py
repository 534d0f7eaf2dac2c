"""``ticker.catalog_watch``: a running embedded server notices symbols another process seeded.

Against a real daphne in the embedded mode (its channel layer in-process, so ``setup_demo`` run
beside it cannot announce to it): the symbols appear in ``/api/hello/``, and the embedded feed
quotes them, within a bounded time of the command's exit.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers.clients import get_json
from tests.helpers.procs import manage
from tests.helpers.sites import embedded
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

BOUND = 5.0  # seconds: the watch looks once a second; generous for a loaded machine


def listed(url: str) -> set[str]:
    status, hello = get_json(url + "/api/hello/")
    assert status == 200
    return {entry["s"] for entry in hello["symbols"]}


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_symbols_seeded_from_the_command_line_reach_a_running_embedded_server(
    seeded_database, tmp_path, server
):
    with embedded(seeded_database, tmp_path, server=server) as site:
        assert len(listed(site.url)) == 42
        manage(["setup_demo", "--symbols", "45"], site.env)
        seeded = time.monotonic()
        asyncio.run(eventually(lambda: len(listed(site.url)) == 45, timeout=BOUND, what="the seeded symbols"))
        noticed = time.monotonic() - seeded
        assert {"ZAAA", "ZAAB", "ZAAC"} <= listed(site.url)

        def quoted() -> bool:  # the embedded feed was told too: it ticks the new symbols
            status, snap = get_json(site.url + "/api/quotes/?symbols=ZAAA,ZAAB,ZAAC")
            return status == 200 and len(snap["q"]) == 3
        asyncio.run(eventually(quoted, timeout=BOUND, what="quotes of the seeded symbols"))
    print(f"{server}: seeded symbols listed {noticed:.2f} s after setup_demo exited")
