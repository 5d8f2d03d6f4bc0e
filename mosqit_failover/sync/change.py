"""One change the tree watcher reports (see :mod:`mosqit_failover.sync.watch`),
and the changes watchdog keeps quiet, found the same way by both of its
backends (:mod:`mosqit_failover.sync.inotify_fd`, :mod:`mosqit_failover.sync.inotify_buffer`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
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


def directories_below(top: bytes, root: bytes) -> Iterator[bytes]:
    """``top`` and every directory below it, each yielded before it is listed (the
    caller watches it first: nothing made between goes unseen). Nothing when ``top``
    is not a directory inside ``root`` by its real path: a name renamed and then
    replaced by a symbolic link (to ``.``, to ``/``) would have the watches, and the
    paths reported, follow it out of the tree. Symbolic links below are not
    followed; no recursion (a tree a thousand levels deep is walked too)."""
    real, base = os.path.realpath(top), os.path.realpath(root)
    if os.path.islink(top) or (real != base and not real.startswith(base.rstrip(b"/") + b"/")):
        return
    todo = [top]
    while todo:
        here = todo.pop()
        yield here
        try:
            with os.scandir(here) as listing:
                todo += [e.path for e in listing if e.is_dir(follow_symlinks=False)]
        except OSError:
            pass  # gone meanwhile: its removal is an event too
