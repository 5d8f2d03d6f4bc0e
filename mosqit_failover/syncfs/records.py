"""The replication records of the synchronous mode. Pure: no I/O.

Every path is relative to the synced directory, as bytes (the kernel's names, any
encoding), with no empty, ``.`` or ``..`` component and no leading ``/``:
:func:`check_path` says so and :mod:`.stream` refuses any other on decoding.

Owners are numeric (uid, gid); :data:`KEEP_ID` leaves one unchanged (as chown's -1).
"""

from __future__ import annotations

from dataclasses import dataclass

KEEP_ID = 0xFFFFFFFF
"""A uid or gid that :class:`Chown` leaves as it is."""

PATH_MAX = 4096
"""Longest path (bytes) a record may carry."""

NAME_MAX = 255
"""Longest component of a path (bytes)."""


class BadPath(ValueError):
    """A path that is not a plain relative path inside the directory."""


def check_path(path: bytes) -> bytes:
    """``path`` if it is a plain relative path that stays inside the directory."""
    if not path:
        raise BadPath("an empty path")
    if len(path) > PATH_MAX:
        raise BadPath(f"a path of {len(path)} bytes (at most {PATH_MAX})")
    if b"\0" in path:
        raise BadPath(f"a path with a NUL byte: {path[:80]!r}")
    if path.startswith(b"/"):
        raise BadPath(f"an absolute path: {path[:80]!r}")
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            raise BadPath(f"a path with an empty, '.' or '..' component: {path[:80]!r}")
        if len(part) > NAME_MAX:
            raise BadPath(f"a name of {len(part)} bytes (at most {NAME_MAX}) in {path[:80]!r}")
    return path


@dataclass(frozen=True)
class Hello:
    """First record of a stream: the sender's epoch (checked by the standby)."""

    epoch: int


@dataclass(frozen=True)
class Write:
    """``data`` written at ``offset`` of the regular file ``path`` (holes stay holes)."""

    path: bytes
    offset: int
    data: bytes


@dataclass(frozen=True)
class SetSize:
    """The file ``path`` cut or extended (with a hole) to ``size`` bytes."""

    path: bytes
    size: int


@dataclass(frozen=True)
class Create:
    """A new, empty regular file (whatever was at ``path`` that is not a directory goes)."""

    path: bytes
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Mkdir:
    path: bytes
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Rmdir:
    path: bytes


@dataclass(frozen=True)
class Unlink:
    path: bytes


@dataclass(frozen=True)
class Rename:
    """``src`` renamed to ``dst``, replacing what ``dst`` was (as rename(2))."""

    src: bytes
    dst: bytes


@dataclass(frozen=True)
class Symlink:
    """A symbolic link at ``path`` whose text is ``target`` (never followed by the standby)."""

    path: bytes
    target: bytes
    uid: int
    gid: int


@dataclass(frozen=True)
class Link:
    """A hard link ``dst`` to the file at ``src``."""

    src: bytes
    dst: bytes


@dataclass(frozen=True)
class Chmod:
    path: bytes
    mode: int


@dataclass(frozen=True)
class Chown:
    path: bytes
    uid: int
    gid: int


@dataclass(frozen=True)
class Utimes:
    """Access and modification times, in nanoseconds since the epoch (the symlink itself)."""

    path: bytes
    atime_ns: int
    mtime_ns: int


@dataclass(frozen=True)
class Commit:
    """A barrier: the standby makes everything before it durable, then answers ``ok SEQ``."""

    seq: int


Record = (
    Hello
    | Write
    | SetSize
    | Create
    | Mkdir
    | Rmdir
    | Unlink
    | Rename
    | Symlink
    | Link
    | Chmod
    | Chown
    | Utimes
    | Commit
)
