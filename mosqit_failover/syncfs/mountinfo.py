"""The mount table (``/proc/PID/mountinfo``), read by the agent and by the file system.

Both need the same two facts: which mounts sit on or below a directory, and whose file
system is on top of it (ours is named :data:`FS_NAME`, the ``fsname=`` of the mount).
"""

from __future__ import annotations

import os
import re

FS_NAME = "mosqit-syncfs"
"""The source every synchronous mount shows in the mount table."""

SELF = "/proc/self/mountinfo"


def _unescape(field: bytes) -> bytes:
    """The kernel writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field)


def mounts(table: str = SELF) -> list[tuple[bytes, bytes]]:
    """(mount point, source) of every mount, in the table's order (a mount listed later
    on the same point is on top); none if the table cannot be read."""
    try:
        with open(table, "rb") as lines:
            return parse(lines.read())
    except OSError:
        return []


def parse(text: bytes) -> list[tuple[bytes, bytes]]:
    """(mount point, source) of every line of a mount table's text. A line ends at a
    newline only: a carriage return in a path is not escaped."""
    out = []
    for row in text.split(b"\n"):
        fields, _, rest = row.partition(b" - ")
        parts, tail = fields.split(b" "), rest.split(b" ")
        if len(parts) > 4 and len(tail) > 1:
            out.append((_unescape(parts[4]), _unescape(tail[1])))
    return out


def points_below(root: bytes, table: str = SELF) -> set[bytes]:
    """The mount points below ``root``, relative to it."""
    return {point[len(root) + 1 :] for point, _ in mounts(table) if point.startswith(root + b"/")}


def ours_on_top(path: str, table: str = SELF) -> bool:
    """Whether our file system (:data:`FS_NAME`) is the topmost mount on ``path``."""
    return top_source(path, table) == FS_NAME


def top_source(path: str, table: str = SELF) -> str | None:
    """The source of the topmost mount on ``path``, if anything is mounted there."""
    wanted = os.fsencode(path)
    sources = [source for point, source in mounts(table) if point == wanted]
    return os.fsdecode(sources[-1]) if sources else None
