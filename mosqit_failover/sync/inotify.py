"""Linux inotify, raw: one instance, its watches and its event records.

The tree watcher (:mod:`mosqit_failover.sync.watch_tree`) keeps the meaning of
the events; this module only talks to the kernel, so that the system calls
live in one place.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

from mosqit_failover.libc import libc

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name
_READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One inotify record: ``name`` is empty for an event on the watched directory itself."""

    wd: int
    mask: int
    cookie: int
    name: bytes


def parse(buffer: bytes) -> list[Event]:
    """The records of one read(2), in the kernel's order."""
    events = []
    at = 0
    while at + _HEADER.size <= len(buffer):
        wd, mask, cookie, length = _HEADER.unpack_from(buffer, at)
        at += _HEADER.size
        name = buffer[at : at + length].split(b"\0", 1)[0]
        at += length
        events.append(Event(wd, mask, cookie, name))
    return events


def _check(result: int, what: str, path: bytes = b"") -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), os.fsdecode(path) if path else what)
    return result


class Inotify:
    """One inotify instance, non-blocking and closed on exec.

    Guarantees: :meth:`add` returns the inode's watch descriptor, the same one
    again for an inode this instance already watches, or raises OSError with the
    kernel's errno (ENOENT, ENOTDIR, ENOSPC for the watch limit...);
    :meth:`remove` never raises (a watch the kernel already dropped is fine);
    :meth:`read` never blocks and returns [] when nothing is queued.
    """

    def __init__(self) -> None:
        self._c = libc()
        self.fd = _check(self._c.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC), "inotify_init1")

    def add(self, path: bytes, mask: int) -> int:
        return _check(self._c.inotify_add_watch(self.fd, path, ctypes.c_uint32(mask)), "", path)

    def remove(self, wd: int) -> None:
        self._c.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[Event]:
        try:
            return parse(os.read(self.fd, _READ_SIZE))
        except BlockingIOError:
            return []

    def close(self) -> None:
        os.close(self.fd)
