"""autobahn's per-connection option dump is made only when a log line is formatted."""

import pprint

from autobahn.websocket import protocol

from dashboard.handshakes import Deferred, defer_option_dump


class Counted:
    """A value that counts how often it is formatted."""

    formatted = 0

    def __repr__(self) -> str:
        Counted.formatted += 1
        return "Counted()"


def test_the_application_defers_autobahns_option_dump():
    import dashboard.asgi  # noqa: F401  (what daphne imports)

    assert protocol.pformat is Deferred
    assert defer_option_dump() is True  # twice is once


def test_a_deferred_dump_formats_nothing_until_read_then_reads_as_pformat():
    defer_option_dump()
    value = [("openHandshakeTimeout", 5, "Factory"), ("autoPingInterval", 20, "Factory"), Counted()]
    Counted.formatted = 0
    dump = protocol.pformat(value)
    assert Counted.formatted == 0
    assert f"\n{dump}" == "\n" + pprint.pformat(value) and Counted.formatted > 0
