"""The price feed: tick sources → quote book and candles → numbered batches in the store and on
the layer. ``publisher`` runs one feed; ``standby`` waits for the store's lease and runs feeds."""
