"""The daphne fast path's pure parts: frame building and recognising daphne's send.

Its behaviour on real connections (delivery, Twisted's backpressure, resync after a drain) is
tested with a real daphne in tests/test_live.py, beside the ASGI path and uvicorn.
"""

import functools

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ticker.fastpath import daphne_protocol, direct_link, text_frame


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


def test_the_fast_path_can_be_turned_off(settings):
    settings.TICKER_DAPHNE_FAST_PATH = False
    assert direct_link(_send) is None
