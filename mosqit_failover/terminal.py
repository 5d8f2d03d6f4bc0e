"""Text bound for an operator's terminal, made safe to show.

Names and reasons that reach a terminal come from outside: a config key, a peer's
status, a haresources line, a file name on disk. An escape sequence among them would
be run by the terminal (recolour, retitle, clear the screen), and a file name that is
not UTF-8 reaches Python as lone surrogates, which a UTF-8 stdout refuses to encode.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

# C0 controls but tab and line feed, DEL, C1 (0x9b starts a control sequence on some
# terminals), and lone surrogates: U+DC80-U+DCFF stand for undecodable bytes (a file
# name), any other came from a peer's JSON ("\ud800"); no UTF-8 stream can write one
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte it stands for
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def terminal_safe(text: str) -> str:
    """`text` with every control character and undecodable byte shown as \\xNN, and
    any other lone surrogate as \\uXXXX.

    Guarantees: the result holds no character a terminal acts on but tab and line
    feed, encodes as UTF-8, and equals `text` when `text` had nothing to escape."""
    return _UNSAFE.sub(_shown, text)


class SafeWriter:
    """A text stream that writes `terminal_safe` of everything to the stream it wraps.

    The CLI's stdout and stderr while a command runs (`escaped_output`): what reaches
    the operator from a peer, a remote shell, apt or a file is escaped wherever it is
    printed. Guarantees: `write` never passes on a control character but tab and line
    feed; `write_control` passes on the program's own control sequences (a screen
    redraw) as they are; every other attribute (fileno, isatty, flush, encoding, the
    binary buffer) is the wrapped stream's.
    """

    def __init__(self, wrapped: TextIO) -> None:
        self.wrapped = wrapped

    def write(self, text: str) -> int:
        safe = terminal_safe(text)
        try:
            self.wrapped.write(safe)
        except UnicodeEncodeError:  # an ASCII terminal (LANG=C, PYTHONIOENCODING=ascii)
            encoding = self.wrapped.encoding or "ascii"
            self.wrapped.write(safe.encode(encoding, "backslashreplace").decode(encoding))
        return len(text)

    def write_control(self, sequence: str) -> None:
        self.wrapped.write(sequence)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def write_control(stream: TextIO, sequence: str) -> None:
    """Write one of the program's own control sequences, through a `SafeWriter` too."""
    if isinstance(stream, SafeWriter):
        stream.write_control(sequence)
    else:
        stream.write(sequence)


@contextlib.contextmanager
def escaped_output() -> Iterator[None]:
    """sys.stdout and sys.stderr as `SafeWriter`s for the block, restored after it. A
    stream that is None (its descriptor closed: print() then writes nothing) stays so."""
    stdout, stderr = sys.stdout, sys.stderr
    if stdout is not None:
        sys.stdout = SafeWriter(stdout)
    if stderr is not None:
        sys.stderr = SafeWriter(stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):  # a closed pipe: said elsewhere
                    stream.flush()
        sys.stdout, sys.stderr = stdout, stderr


class SafeFormatter(logging.Formatter):
    """Log lines with `terminal_safe` applied: the agent's stderr is a terminal when it
    runs by hand, and its lines quote hooks' and mail servers' words."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))
