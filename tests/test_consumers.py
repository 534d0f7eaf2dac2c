"""The /ws/quotes/ consumer through the whole ASGI app, on the in-memory layer with the embedded feed."""

import orjson
import pytest
from channels.testing import WebsocketCommunicator

from tests.helpers.waiting import eventually
from ticker import protocol as p

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(application, headers=None) -> tuple[WebsocketCommunicator, dict]:
    comm = WebsocketCommunicator(application, "/ws/quotes/", headers=headers or [])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm, await receive(comm)


async def receive(comm: WebsocketCommunicator, timeout: float = 3) -> dict:
    return orjson.loads(await comm.receive_from(timeout))


async def receive_kind(comm: WebsocketCommunicator, kind: str, limit: int = 50) -> dict:
    for _ in range(limit):
        frame = await receive(comm)
        if frame["t"] == kind:
            return frame
    raise AssertionError(f"no {kind!r} frame in {limit}")


async def send(comm: WebsocketCommunicator, obj) -> None:
    await comm.send_to(text_data=obj if isinstance(obj, str) else orjson.dumps(obj).decode())


async def test_client_gets_hello_then_snap_then_rising_quotes(services, application):
    comm, hello = await connect(application)
    assert hello["t"] == "hello" and hello["v"] == 1 and hello["epoch"] == services.hub.replica.epoch
    assert {s["s"] for s in hello["symbols"]} >= {"AAPL", "MSFT"}
    await send(comm, {"op": "sub", "symbols": "*"})
    snap = await receive(comm)
    assert snap["t"] == "snap" and len(snap["q"]) == len(hello["symbols"])
    seqs = [(await receive_kind(comm, "q"))["seq"] for _ in range(5)]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert seqs[0] > snap["seq"] - 1
    await comm.disconnect()


async def test_unknown_symbol_gets_err_and_the_connection_lives_on(services, application):
    comm, _ = await connect(application)
    await send(comm, {"op": "sub", "symbols": ["AAPL", "NOPE"]})
    snap = await receive(comm)
    assert [r[0] for r in snap["q"]] == ["AAPL"]
    err = await receive(comm)
    assert err == {"t": "err", "code": "unknown_symbol", "msg": "unknown symbol(s): NOPE"}
    await send(comm, {"op": "ping", "id": 1})
    assert (await receive_kind(comm, "pong"))["id"] == 1
    await comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [("{not json", "bad_request"), ('{"op":"fly"}', "unknown_op"), ('{"op":"sub","symbols":7}', "bad_request")],
)
async def test_bad_frames_get_err_and_the_connection_stays_open(services, application, frame, code):
    comm, _ = await connect(application)
    await send(comm, frame)
    assert (await receive_kind(comm, "err"))["code"] == code
    await send(comm, {"op": "ping", "id": "still-here"})
    assert (await receive_kind(comm, "pong"))["id"] == "still-here"
    await comm.disconnect()


async def test_binary_frame_gets_err(services, application):
    comm, _ = await connect(application)
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await receive_kind(comm, "err"))["code"] == "bad_request"
    await comm.disconnect()


async def test_oversized_frame_that_reaches_the_consumer_closes_with_4009(services, application):
    """The servers get the same limit and close with 1009 first (tests/test_limits.py)."""
    comm, _ = await connect(application)
    await send(comm, "x" * (p.MAX_FRAME_BYTES + 1))
    for _ in range(50):
        out = await comm.receive_output(3)
        if out["type"] == "websocket.close":
            assert out["code"] == p.WS_4009_TOO_BIG
            break
    else:
        raise AssertionError("not closed")


async def test_flood_gets_rate_limited_then_closed_with_4008(services, application):
    comm, _ = await connect(application)
    for i in range(p.RATE_BURST + p.FLOOD_BUDGET + 5):
        await send(comm, {"op": "ping", "id": i})
    kinds, close = [], None
    for _ in range(500):
        out = await comm.receive_output(3)
        if out["type"] == "websocket.close":
            close = out["code"]
            break
        kinds.append(orjson.loads(out["text"]))
    assert close == p.WS_4008_POLICY
    assert [k["code"] for k in kinds if k["t"] == "err"] == ["rate_limited"]
    assert len([k for k in kinds if k["t"] == "pong"]) == p.RATE_BURST


async def test_foreign_origin_is_refused_at_the_handshake(services, application):
    comm = WebsocketCommunicator(application, "/ws/quotes/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await comm.connect(timeout=5)
    assert not connected


async def test_same_site_origin_is_accepted(services, application):
    comm, hello = await connect(application, headers=[(b"origin", b"http://127.0.0.1:8000")])
    assert hello["t"] == "hello"
    await comm.disconnect()


async def test_resume_after_reconnect_continues_the_seq(services, application):
    comm, hello = await connect(application)
    await send(comm, {"op": "sub", "symbols": "*"})
    last = (await receive_kind(comm, "q"))["seq"]
    await comm.disconnect()
    comm, hello = await connect(application)
    await send(comm, {"op": "resume", "epoch": hello["epoch"], "seq": last, "symbols": "*"})
    frame = await receive(comm)
    assert frame["t"] == "snap" and frame["seq"] >= last and frame["epoch"] == hello["epoch"]
    assert len(frame["q"]) < len(hello["symbols"])  # only what changed since `last`, not the board
    await comm.disconnect()


async def test_disconnect_leaves_nothing_in_the_hub(services, application):
    comms = []
    for _ in range(20):
        comm, _ = await connect(application)
        await send(comm, {"op": "sub", "symbols": ["AAPL", "MSFT"]})
        comms.append(comm)
    assert services.hub.client_count == 20
    for comm in comms:
        await comm.disconnect()
    assert services.hub.client_count == 0 and services.hub.registry.groups == {}


async def test_connect_disconnect_cycles_leave_nothing_behind(services, application):
    """Churn leaves no client, group, task or layer member behind, and memory stops growing.

    The growth is a slope after warm-up, not a margin over what caches hold: the market is
    stopped once the warm-up has filled the hub's bounded caches (encoded rows, recent batches),
    then the memory Python holds is read every ``STEP`` cycles, once the closed connections'
    consumers have ended, and the median of the slopes between those readings (robust to the
    odd reading taken mid-resize) must stay under 64 bytes a cycle, whatever the machine's
    speed: a leaked client would cost hundreds.
    """
    import asyncio
    import gc
    import itertools
    import statistics
    import tracemalloc

    from channels.layers import get_channel_layer

    step, readings = 100, 12

    async def cycle(i: int) -> None:
        comm, _ = await connect(application)
        await send(comm, {"op": "sub", "symbols": "*" if i % 2 else ["AAPL", "MSFT"]})
        await receive_kind(comm, "snap")
        await comm.disconnect()

    async def held() -> int:
        """Bytes Python holds once the consumers of the closed connections have ended."""
        await eventually(lambda: len(asyncio.all_tasks()) <= tasks, 10, 0.01, "the closed consumers to end")
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    hub, layer = services.hub, get_channel_layer()
    services.feed_task.cancel()  # a still market: after warm-up the caches hold what they will hold
    await asyncio.gather(services.feed_task, return_exceptions=True)
    for i in range(step):  # warm up: imports, caches, first-use allocations
        await cycle(i)
    gc.collect()
    tasks, groups = len(asyncio.all_tasks()), {g: set(m) for g, m in layer.groups.items()}
    tracemalloc.start()
    try:
        sizes = []
        for _ in range(readings):
            sizes.append(await held())
            for i in range(step):
                await cycle(i)
        sizes.append(await held())
    finally:
        tracemalloc.stop()
    assert hub.client_count == 0 and hub.held_count == 0 and hub.registry.groups == {}
    assert len(asyncio.all_tasks()) == tasks
    assert {g: set(m) for g, m in layer.groups.items()} == groups  # only the hub's and the feed's channels
    points = list(enumerate(sizes))[1:]  # the first reading is taken as tracing starts
    slope = statistics.median((b - a) / ((j - i) * step) for (i, a), (j, b) in itertools.combinations(points, 2))
    print(f"held after each {step} cycles: {sizes}; slope {slope:.1f} B a cycle")
    assert slope < 64, f"memory grows by {slope:.0f} B a connection: {sizes}"
