"""The frames the hub sends, made from its codec and its replica: encoded once, shared by many.

- **Encode once.** A batch's rows are encoded once as fragments (``Codec.fragment``); a snap's
  rows are encoded once (``Codec.row``) and kept until the row changes, so every snap that
  carries a row joins the same bytes. A frame is built once per group and shared by its members.
- **Every frame of the state carries its position**, ``mark`` (``epoch:seq``): an event
  stream's ``id``, which ``Last-Event-ID`` resumes from.
- **The codec names each frame's kind**: nothing here knows the protocol's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .delivery import Frame
from .replica import Replica
from .types import Codec, Row, Selection


class Frames:
    """Builds the hub's frames; keeps the replica's rows as the codec encodes them."""

    def __init__(self, codec: Codec, replica: Replica) -> None:
        self.codec = codec
        self.replica = replica
        self.encoded: dict[str, bytes] = {}  # made on demand, dropped when the row changes

    def mark(self) -> str:
        """Where the state is: ``epoch:seq``."""
        return f"{self.replica.epoch}:{self.replica.seq}"

    def forget(self, keys: Iterable[str]) -> None:
        """These rows changed or went: their encodings are stale."""
        for key in keys:
            self.encoded.pop(key, None)

    def clear(self) -> None:
        """The replica was reloaded: every encoding is stale."""
        self.encoded.clear()

    def rows(self, keys: Selection) -> dict[str, bytes]:
        """The rows of ``keys`` (None: all) in key order, encoded for a snap (once per row)."""
        encoded, encode, out = self.encoded, self.codec.row, {}
        for row in self.replica.select(keys):
            key = row[0]
            data = encoded.get(key)
            if data is None:
                data = encoded[key] = encode(row)
            out[key] = data
        return out

    def fragments(self, rows: Sequence[Row]) -> dict[str, bytes]:
        """A batch's rows, each encoded once for every delta that carries it."""
        fragment = self.codec.fragment
        return {row[0]: fragment(row) for row in rows}

    def delta(self, seq: int, fragments: Iterable[bytes], mark: str) -> Frame:
        """Batch ``seq`` as it is, joined from its fragments, for one group."""
        return Frame(self.codec.delta(seq, fragments), self.codec.delta_kind, mark)

    def snap(self, rows: Iterable[bytes], since: int | None, mark: str) -> Frame:
        """The state of some keys, joined from their encoded rows; ``since``: the rows are every
        one changed after that seq (a merge)."""
        replica = self.replica
        return Frame(self.codec.snap(replica.epoch, replica.seq, rows, since), self.codec.snap_kind, mark)

    def snap_of(self, keys: Selection, since: int | None = None) -> Frame:
        """A snap of ``keys`` (None: all) for one client."""
        return self.snap(self.rows(keys).values(), since, self.mark())

    def catalog(self) -> Frame:
        """The catalog as it is now, with where the feed's prices come from."""
        return Frame(self.codec.catalog(self.replica.catalog, self.replica.source), self.codec.catalog_kind)

    def hello_text(self, ack_ms: int) -> str:
        """The first frame of a connection asked to ack every ``ack_ms`` (0: not asked)."""
        replica = self.replica
        return self.codec.hello(replica.epoch, replica.seq, replica.catalog, ack_ms, replica.source)

    def hello(self, ack_ms: int) -> Frame:
        """The first frame of a connection, marked with where the state is."""
        return Frame(self.hello_text(ack_ms), self.codec.hello_kind, self.mark())
