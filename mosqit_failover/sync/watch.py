"""Watching one directory tree with watchdog (inotify), without losing the bad news.

watchdog handles recursion and move pairing, but it keeps three things to
itself: the kernel's queue overflow (IN_Q_OVERFLOW: events were lost), the
inotify watch limit on subdirectories (ENOSPC: those subtrees go unwatched)
and the loss of the root's own watch (deleted, its filesystem unmounted, or
the directory moved away: watchdog would go on watching it under its old
name).
:class:`TreeWatcher` reports all three, so the engine rescans or watches
again instead of silently missing files. How depends on watchdog's
internals, which changed: :mod:`mosqit_failover.sync.inotify_fd` (watchdog
7.x) and :mod:`mosqit_failover.sync.inotify_buffer` (2.x to 6.x; Debian 12
has 2.2).

A rename inside the tree is one "move" change (source and destination, the
children of a renamed directory add nothing); a rename out of the tree is a
removed path, a rename into it a new path or tree. A file created is a "new"
change (then a "path" when it is closed after writing).

Guarantees: callbacks come from watchdog's threads; :class:`TreeWatcher`
only appends to a locked list and wakes the event loop once per burst
(``loop.call_soon_threadsafe``); the engine drains the list in the loop.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

import watchdog.events
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from mosqit_failover.sync.change import Change

__all__ = ["Change", "TreeWatcher"]


def _quiet_event_classes() -> tuple[type[FileSystemEvent], ...]:
    """Events that change nothing: a file opened, or closed without writing.
    An older watchdog lacks one or both (Debian 12's 2.2 has neither, nor watches for them)."""
    names = ("FileOpenedEvent", "FileClosedNoWriteEvent")
    return tuple(vars(watchdog.events)[name] for name in names if name in vars(watchdog.events))


_QUIET_EVENTS = _quiet_event_classes()

# Which watchdog: one with a shared InotifyFD reader (7.x), or one with an Inotify
# per tree (2.x to 6.x; Debian 12 has 2.2). A feature test: the hooks differ.
try:
    from watchdog.observers.inotify_c import InotifyFD as _InotifyFD  # noqa: F401
except ImportError:
    from mosqit_failover.sync.inotify_buffer import reporting_observer
else:
    from mosqit_failover.sync.inotify_fd import reporting_observer


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, report: Callable[[Change], None]) -> None:
        self._root = root
        self._report = report

    def _rel(self, path: str | bytes) -> str | None:
        text = os.fsdecode(path)
        if text == self._root:
            return "."
        if text.startswith(self._root + "/"):
            return text[len(self._root) + 1 :]
        return None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, _QUIET_EVENTS):
            return
        src = self._rel(event.src_path)
        if src == "." and isinstance(event, DirDeletedEvent | DirMovedEvent):
            self._report(Change("lost", "the directory itself was deleted or moved"))
            return
        if isinstance(event, FileClosedEvent) and src is not None:
            self._report(Change("path", src))
            return
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            self._moved(event, src)
            return
        if src is not None:
            kind = "path"
            if isinstance(event, DirCreatedEvent):
                kind = "tree"
            elif isinstance(event, FileCreatedEvent):
                kind = "new"
            self._report(Change(kind, src))

    def _moved(self, event: FileMovedEvent | DirMovedEvent, src: str | None) -> None:
        """A rename inside the tree is one "move"; its children's synthetic moves add nothing
        (the destination tree is listed whole). A half outside counts as a delete or create."""
        if event.is_synthetic:
            return
        tree = isinstance(event, DirMovedEvent)
        dest = self._rel(event.dest_path) if event.dest_path else None
        if src is not None and dest is not None and "." not in (src, dest):
            self._report(Change("move", src, dest, tree))
            return
        if src is not None:
            self._report(Change("path", src))
        if dest is not None and dest != ".":
            self._report(Change("tree" if tree else "path", dest))


class TreeWatcher:
    """Recursive inotify watch of ``root``; changes are drained with :meth:`drain`.

    :meth:`start` raises OSError if the root cannot be watched at all (missing,
    not a directory, watch limit reached on the root itself).
    """

    def __init__(self, root: str, wake: Callable[[], None]) -> None:
        self.root = root.rstrip("/")
        self._wake = wake
        self._lock = threading.Lock()
        self._changes: list[Change] = []
        self._observer: BaseObserver | None = None
        self._stopping = False

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
        observer = reporting_observer(self.root, self._report)
        try:
            observer.schedule(_Handler(self.root, self._report), self.root, recursive=True)
            observer.start()
        except BaseException:
            observer.stop()
            raise
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        with self._lock:
            self._stopping = True
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def drain(self) -> list[Change]:
        with self._lock:
            changes, self._changes = self._changes, []
        return changes
