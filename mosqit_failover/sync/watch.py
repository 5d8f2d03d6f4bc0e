"""Watching one directory tree with watchdog (inotify), without losing the bad news.

watchdog handles recursion and move pairing, but it keeps three things to
itself: the kernel's queue overflow (IN_Q_OVERFLOW: events were lost), the
inotify watch limit on subdirectories (ENOSPC: those subtrees go unwatched)
and the loss of the root's own watch (deleted, its filesystem unmounted, or
the directory moved away: watchdog would go on watching it under its old
name).
:class:`TreeWatcher` reports all three, so the engine rescans or watches
again instead of silently missing files.

A rename inside the tree is one "move" change (source and destination, the
children of a renamed directory add nothing); a rename out of the tree is a
removed path, a rename into it a new path or tree.

Guarantees: callbacks come from watchdog's threads; :class:`TreeWatcher`
only appends to a locked list and wakes the event loop once per burst
(``loop.call_soon_threadsafe``); the engine drains the list in the loop.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter
from watchdog.observers.inotify_c import InotifyConstants, InotifyFD


@dataclass(frozen=True)
class Change:
    """kind: "path" (one entry), "tree" (a directory and all below it), "full",
    "limit" (watch limit hit: poll instead), "lost" (the root itself went away),
    "move" (``path`` renamed to ``dest`` inside the tree; ``tree``: it is a directory)."""

    kind: str
    path: str = ""
    dest: str = ""
    tree: bool = False


class _ReportingFD(InotifyFD):
    """watchdog's inotify reader, telling us about overflow, the watch limit and the
    root moved away (watchdog would go on watching it under its old name)."""

    def __init__(self, root: str, report: Callable[[Change], None]) -> None:
        super().__init__()
        self._root = os.fsencode(root)
        self._root_wd: Any = None
        self._report = report

    def handle_event(self, event: Any) -> None:
        if event.is_queue_overflow:
            self._report(Change("full", "inotify queue overflow"))
        elif event.is_move_self and event.wd == self._root_wd:
            self._report(Change("lost", "the directory itself was moved away"))
        elif event.mask & InotifyConstants.IN_UNMOUNT and event.wd == self._root_wd:
            self._report(Change("lost", "the directory's filesystem was unmounted"))
        super().handle_event(event)

    def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
        if path == self._root:
            mask |= InotifyConstants.IN_MOVE_SELF
        try:
            wd = super().add_callback(path, mask, callback, id_)
            if path == self._root:  # again after an overflow: watchdog rebuilds its watches
                self._root_wd = wd
            return wd
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EMFILE):
                self._report(Change("limit", os.fsdecode(path)))
            raise


class _Observer(BaseObserver):
    def __init__(self, fd: _ReportingFD) -> None:
        self._fd = fd
        fd.start()
        super().__init__(InotifyEmitter, timeout=1.0, inotify_fd=fd)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._fd.stop()
        self._fd.join()


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
        if isinstance(event, FileOpenedEvent | FileClosedNoWriteEvent):
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
            self._report(Change("tree" if isinstance(event, DirCreatedEvent) else "path", src))

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
        self._observer: _Observer | None = None
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
        observer = _Observer(_ReportingFD(self.root, self._report))
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
