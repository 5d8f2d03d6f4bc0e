"""Watching one directory tree with inotify, without losing the bad news.

:class:`TreeWatcher` runs one inotify instance and one reader thread per tree;
:mod:`mosqit_failover.sync.watch_tree` keeps the watches and turns the events
into :class:`~.change.Change` values. Besides the files that changed it
reports what a tree watcher tends to keep quiet: the kernel's queue overflow
("full"), the watch limit ("limit"), a directory it cannot watch
("unwatchable") and the loss of the root itself ("lost": deleted, moved, its
filesystem unmounted, or a directory above it moved), so the engine rescans,
polls or watches again instead of silently missing files.

A rename inside the tree is one "move" change (source and destination, the
children of a renamed directory add nothing); a rename out of the tree is a
removed path, a rename into it a new path or tree. A file created is a "new"
change (then a "path" when it is written or closed).

Why a thread in an asyncio program: walking a renamed tree of thousands of
directories takes a good part of a second, which must not delay the agent's
heartbeats. The thread only appends to a locked list and wakes the event loop
once per burst (``wake``, the engine's ``loop.call_soon_threadsafe``); the
engine drains the list in the loop.
"""

from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import Callable
from typing import BinaryIO

from mosqit_failover.sync.change import Change
from mosqit_failover.sync.inotify import Inotify
from mosqit_failover.sync.watch_tree import WatchedTree
from mosqit_failover.syncfs import mountinfo

__all__ = ["Change", "TreeWatcher"]

# The two halves of a rename are queued together; one missing this long after the
# first went out of the tree. A pair split anyway costs a removal and a resend.
_PAIR_WAIT_MS = 20


class TreeWatcher:
    """Recursive inotify watch of ``root``; changes are drained with :meth:`drain`.

    :meth:`start` raises OSError if the root cannot be watched at all (missing,
    not a directory, watch limit reached on the root itself); after that the
    reader reports every failure as a change, never as an exception.
    """

    def __init__(self, root: str, wake: Callable[[], None]) -> None:
        self.root = root.rstrip("/") or "/"
        self._wake = wake
        self._lock = threading.Lock()
        self._changes: list[Change] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._inotify: Inotify | None = None
        self._tree: WatchedTree | None = None  # the reader's: read it only when it is held
        self._stop_pipe: tuple[int, int] | None = None
        # held while the reader handles what it read (tests hold it to act as a load)
        self.handling = threading.Lock()

    def _report(self, change: Change) -> None:
        with self._lock:
            if self._stopping:  # our own stop ends the watches too: not news
                return
            first = not self._changes
            self._changes.append(change)
        if first:
            self._wake()

    def start(self) -> None:
        if not os.path.isdir(self.root):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory (or missing)", self.root)
        inotify = Inotify()
        # The mount table before the walk: a filesystem mounted after this read polls
        # as a change, one mounted before it the walk goes through. Read later (in
        # the reader), a mount between the walk and the read would be taken for one
        # that was always there, and not watched.
        mounts = _MountTable()
        try:
            before_walk = mounts.points()
            tree = WatchedTree(inotify, self.root, self._report)
            tree.start()
            tree.mounts_seen(before_walk)
        except BaseException:
            mounts.close()
            inotify.close()
            raise
        self._inotify, self._tree = inotify, tree
        self._stop_pipe = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(
            target=self._read, args=(tree, mounts), name=f"watch {self.root}", daemon=True
        )
        self._thread.start()

    def _read(self, tree: WatchedTree, mounts: _MountTable) -> None:
        assert self._inotify is not None and self._stop_pipe is not None
        poller = select.poll()
        poller.register(self._inotify.fd, select.POLLIN)
        poller.register(self._stop_pipe[0], select.POLLIN)
        try:
            with mounts:
                if mounts.fd is not None:
                    poller.register(mounts.fd, select.POLLPRI)
                while True:
                    ready = dict(poller.poll(_PAIR_WAIT_MS if tree.moves_unpaired else None))
                    if self._stop_pipe[0] in ready:
                        return
                    with self.handling:
                        if mounts.fd in ready:
                            tree.mounts_seen(mounts.points())
                        events = self._inotify.read() if ready else []
                        if events:
                            tree.handle(events)
                        elif not ready:
                            tree.finish_moves()
        except Exception as error:  # a bug must not leave the tree silently unwatched
            self._report(Change("lost", f"the watcher failed ({error!r}); watching again"))

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        with self._lock:
            self._stopping = True
        if thread is not None and self._stop_pipe is not None:
            os.write(self._stop_pipe[1], b"x")
            thread.join(timeout=5)
        for fd in self._stop_pipe or ():
            os.close(fd)
        self._stop_pipe = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def drain(self) -> list[Change]:
        with self._lock:
            changes, self._changes = self._changes, []
        return changes


class _MountTable:
    """This process's mount points, from /proc/self/mountinfo, which polls as
    POLLPRI when a filesystem is mounted or unmounted since it was opened or last
    polled (``fd`` None without /proc). Opened at creation; closed on leaving a
    ``with`` block."""

    def __init__(self) -> None:
        try:
            self._file: BinaryIO | None = open(mountinfo.SELF, "rb")  # noqa: SIM115 (see close)
        except OSError:
            self._file = None
        self.fd = self._file.fileno() if self._file is not None else None

    def __enter__(self) -> _MountTable:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def points(self) -> list[bytes]:
        if self._file is None:
            return []
        self._file.seek(0)
        return [point for point, _ in mountinfo.parse(self._file.read())]
