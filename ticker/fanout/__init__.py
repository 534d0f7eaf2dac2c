"""Per-process fan-out: one layer subscription in, pre-encoded frames out to every connection.

It knows keys, rows, epochs and seqs, never prices or models: the application gives it a
``Codec`` (``types``) and a stream of ``Batch``/``Catalog`` events, and it imports nothing
from the feed or the ORM. ``replica`` and ``registry`` are pure; ``delivery``, ``fastpath``
and ``hub`` do the I/O.
"""
