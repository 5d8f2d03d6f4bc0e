"""Text bound for an operator's terminal, made safe to show.

Names and reasons that reach a terminal come from outside: a config key, a peer's
status, a haresources line, a file name on disk. An escape sequence among them would
be run by the terminal (recolour, retitle, clear the screen), and a file name that is
not UTF-8 reaches Python as lone surrogates, which a UTF-8 stdout refuses to encode.
"""

from __future__ import annotations

import re

# C0 controls but tab and line feed, DEL, C1 (0x9b starts a control sequence on some
# terminals), and the surrogates that stand for undecodable bytes (U+DC80-U+DCFF)
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udcff]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def terminal_safe(text: str) -> str:
    """`text` with every control character and undecodable byte shown as \\xNN.

    Guarantees: the result holds no character a terminal acts on but tab and line
    feed, encodes as UTF-8, and equals `text` when `text` had nothing to escape."""
    return _UNSAFE.sub(_shown, text)
