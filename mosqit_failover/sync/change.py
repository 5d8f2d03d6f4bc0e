"""One change the tree watcher reports (see :mod:`mosqit_failover.sync.watch`),
and the changes watchdog keeps quiet, found the same way by both of its
backends (:mod:`mosqit_failover.sync.inotify_fd`, :mod:`mosqit_failover.sync.inotify_buffer`)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000


@dataclass(frozen=True)
class Change:
    """kind: "path" (one entry), "new" (a file just created: one entry the peer has
    not had since), "tree" (a directory and all below it), "full", "limit" (watch
    limit hit: poll instead), "lost" (the root itself went away), "move" (``path``
    renamed to ``dest`` inside the tree; ``tree``: it is a directory)."""

    kind: str
    path: str = ""
    dest: str = ""
    tree: bool = False


def raw_event_change(wd: int, mask: int, root_wd: int | None) -> Change | None:
    """What one raw inotify event tells that watchdog keeps quiet: the queue overflowed,
    or the root (watch ``root_wd``) moved away or lost its filesystem."""
    if mask & IN_Q_OVERFLOW:  # the kernel's overflow event (watch descriptor -1)
        return Change("full", "inotify queue overflow")
    if wd == root_wd and mask & IN_MOVE_SELF:
        return Change("lost", "the directory itself was moved away")
    if wd == root_wd and mask & IN_UNMOUNT:
        return Change("lost", "the directory's filesystem was unmounted")
    return None


def watch_failed_change(error: OSError, path: bytes) -> Change | None:
    """A "limit" change if adding the watch of ``path`` failed on the watch limit
    (watchdog skips a directory created later that it cannot watch)."""
    if error.errno in (errno.ENOSPC, errno.EMFILE):
        return Change("limit", os.fsdecode(path))
    return None
