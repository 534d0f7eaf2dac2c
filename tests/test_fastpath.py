"""The daphne fast path's pure parts: frame building and recognising daphne's send.

Its behaviour on real connections (delivery, Twisted's backpressure, resync after a drain) is
tested with a real daphne in tests/test_live.py, beside the ASGI path and uvicorn.
"""

import functools

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ticker.fanout.delivery import Client, Outbox
from ticker.fanout.delivery import Frame as OutFrame
from ticker.fanout.fastpath import counters, daphne_protocol, probe, text_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_is_a_final_unmasked_text_frame_of_any_size(size):
    payload = ("x" * size).encode()
    frame = parse(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


async def _send(message):
    pass


class NotDaphne:
    async def handle_reply(self, protocol, message):
        pass


def test_sends_from_other_servers_are_not_taken_for_daphne():
    assert daphne_protocol(_send) is None
    assert daphne_protocol(functools.partial(NotDaphne().handle_reply, object())) is None


def test_another_servers_send_gets_no_link():
    client = Client(_send, Outbox(), fast_path=True)
    assert client.link is None and not client.sees_buffer and not client.writes_direct


class Pipe:
    """A link that records frames, until its transport breaks (an attribute gone, say)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.broken = False
        self.detached = False
        self.direct = True

    def write(self, frame: bytes) -> None:
        if self.broken:
            raise AttributeError("'Connection' object has no attribute '_tempDataLen'")
        self.frames.append(frame)

    def detach(self) -> None:
        self.detached = True


async def test_a_link_that_breaks_mid_stream_demotes_that_connection_to_asgi_sends():
    sent: dict[int, list[str]] = {0: [], 1: []}
    outbox = Outbox()
    clients = []
    for i in (0, 1):
        async def send(message, i=i):
            sent[i].append(message["text"])

        client = Client(send, outbox)
        client.link = Pipe()  # type: ignore[assignment]
        clients.append(client)
    before = counters.demoted
    for n in range(6):
        if n == 3:
            clients[0].link.broken = True  # type: ignore[union-attr]
        frame = OutFrame(f'{{"n":{n}}}')
        assert all(client.deliver(frame) for client in clients)
    broken_pipe = clients[0]
    assert broken_pipe.link.direct is False and counters.demoted == before + 1  # type: ignore[union-attr]
    assert sent[0] == ['{"n":3}', '{"n":4}', '{"n":5}']  # from the failed write on, through ASGI
    assert sent[1] == [] and len(clients[1].link.frames) == 6  # type: ignore[union-attr]


def test_probe_names_every_missing_attribute():
    class Transport:
        producer = None
        streamingProducer = False

        def registerProducer(self, producer, streaming): ...
        def unregisterProducer(self): ...
        def write(self, data): ...

    class Factory:
        failByDrop = True

    class Protocol:
        STATE_OPEN = 3
        state = 3
        transport = Transport()
        factory = Factory()
        failByDrop = True

    assert probe(Protocol()) == []
    del Transport.write
    assert probe(Protocol()) == ["transport.write"]
    assert probe(object()) == [
        "protocol.state", "protocol.STATE_OPEN", "protocol.transport", "protocol.factory", "protocol.failByDrop",
        "protocol.transport (None)",
    ]
