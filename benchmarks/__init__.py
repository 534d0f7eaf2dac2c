"""Benchmarks: the WebSocket load client, the matrix runner and the baseline servers."""
