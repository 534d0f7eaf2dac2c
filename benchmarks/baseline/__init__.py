"""Baseline servers for the fan-out benchmark: the paths our own is compared with (issue 4)."""
