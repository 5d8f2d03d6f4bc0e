"""The small counter files of the receiving side: one decimal number on the first line."""

from __future__ import annotations


def read_counter(raw: bytes, width: int = 19) -> int:
    """The number on the first line of ``raw``: ASCII digits only, at most ``width`` of
    them; 0 for anything else (an empty, damaged or foreign file counts as never written)."""
    text = raw.split(b"\n", 1)[0].strip()
    return int(text) if text.isdigit() and len(text) <= width else 0
