"""Clients of the quote stream outside the browser: ``manage.py watch`` (docs/PROTOCOL.md)."""
