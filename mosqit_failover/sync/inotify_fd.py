"""The tree watcher's observer on watchdog with one shared ``InotifyFD`` reader (7.x).

This watchdog reads every watch of an observer from one inotify descriptor
(``InotifyFD``); subclassing that reader shows us each raw event before
watchdog handles it, and each watch as it is added.

It handles events well after the kernel queued them (one thread reads them,
another handles them), and its bookkeeping of watches (a tree of directories,
each with its watch descriptor) loses some across renames, for good: files made
there later went unseen. Two ways, both found by tests:

- a directory made just before a directory above it was renamed: watchdog asks
  for its watch by a path gone by then;
- a directory renamed into one made just before (``mkdir new && mv old new/``):
  the kernel has no watch on ``new`` yet, so no "moved to" event; watchdog,
  reading ``new``'s contents, lists ``old`` a second time under its watch
  descriptor, then handles the rename as ``old`` moved out of the tree, and
  removes that descriptor's watch, which the entry under ``new`` needed.

:class:`_MendingGroup`, watchdog's watches of one tree, checks every directory
below one renamed into place, and below the entries that shared a watch with a
directory moved out, and watches them again where needed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from typing import Any

import watchdog.observers.inotify as watchdog_inotify
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyConstants, InotifyFD

from mosqit_failover.sync.change import (
    Change,
    directories_below,
    raw_event_change,
    watch_failed_change,
)

# A directory renamed inside the tree is watched again under its new name with the
# same watch descriptor; watchdog then replaces its callback (documented) and warns,
# with a repr of every watch of the tree: kilobytes per rename in the journal, about
# nothing wrong. The filter is process-wide, so it names that one message only.
warnings.filterwarnings(
    "ignore", message=r"Callback with id '\d+' already exists for watch", category=RuntimeWarning
)

_INVALID_WD: Any = getattr(watchdog_inotify, "_INVALID_WD", None)
# the lock, the root and the map of watch descriptors are instance attributes
_CAN_MEND = _INVALID_WD is not None and all(
    hasattr(InotifyWatchGroup, name)
    for name in (
        "is_active",
        "_build_event_source_path",
        "_find_node_by_path",
        "_resolve_path",
        "_add_callback",
    )
)


class _ReportingFD(InotifyFD):
    """watchdog's inotify reader, telling us about overflow, the watch limit and the
    root moved away (watchdog would go on watching it under its old name)."""

    def __init__(self, root: str, report: Callable[[Change], None]) -> None:
        super().__init__()
        self._root = os.fsencode(root)
        self._root_wd: Any = None
        self.report = report

    def handle_event(self, event: Any) -> None:
        if (change := raw_event_change(event.wd, event.mask, self._root_wd)) is not None:
            self.report(change)
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
            if (change := watch_failed_change(error, path)) is not None:
                self.report(change)
            raise


class _MendingGroup(InotifyWatchGroup):
    """watchdog's watches of one tree, watched again where its bookkeeping lost one
    (see the module doc). A directory already watched costs one lookup. Files made in
    a directory before its watch came back are sent anyway: a directory renamed in is
    sent whole, and one that watchdog took for moved out and back is a new tree."""

    report: Callable[[Change], None] = staticmethod(lambda change: None)  # set by the emitter

    def __post_init__(self) -> None:
        super().__post_init__()
        grouper = self._move_event_grouper
        purge = grouper.purge_events_for_wds

        def purge_reporting(wds: set[Any]) -> None:
            self._report_moved_out(wds)
            purge(wds)

        grouper.purge_events_for_wds = purge_reporting  # type: ignore[method-assign]  # this group only

    def _report_moved_out(self, wds: set[Any]) -> None:
        """Before watchdog drops the queued events of a directory moved out of the tree,
        report the sources of the renames into it: ``mv d /trash/; mv g /trash/d/`` in
        half a second was a pair whose destination went with ``d``, dropped whole, so
        ``g``'s leaving was never reported (it stayed on the peer)."""
        queue = getattr(self._move_event_grouper, "_queue", None)
        if queue is None or not hasattr(queue, "remove"):
            return
        sources: list[bytes] = []

        def note(item: Any) -> bool:  # a paired rename is a tuple (from, to)
            if type(item) is tuple and item[1].ev.wd in wds and item[0].ev.wd not in wds:
                sources.append(item[0].path)
            return False  # looks at every item, removes none

        queue.remove(note)
        base = self.path.rstrip(b"/") + b"/"
        for source in sources:
            if source.startswith(base):
                self.report(Change("path", os.fsdecode(source[len(base) :])))

    def _can_mend(self, what: str) -> bool:
        """Recursive, with the watchdog insides mending needs; on a watchdog whose
        insides changed again, a rescan is asked for instead."""
        if self.is_recursive and not _CAN_MEND:
            self.report(Change("full", f"{what}; this watchdog cannot mend"))
        return bool(self.is_recursive and _CAN_MEND)

    def on_event(self, event: Any) -> None:
        super().on_event(event)
        if not (event.is_moved_to and event.is_directory):
            return
        if not self._can_mend("a directory was renamed"):
            return
        with self._lock:
            if self.is_active and (destination := self._build_event_source_path(event)):
                self._watch_all_below(destination)

    def remove_watched_directory(self, path: bytes) -> list[bytes]:
        if not self._can_mend("a directory was moved out"):
            return list(super().remove_watched_directory(path))
        with self._lock:
            sharing = self._entries_sharing_watches_below(path)
        gone = list(super().remove_watched_directory(path))
        with self._lock:
            if self.is_active:
                for other in sharing:
                    self._watch_all_below(other)
        return gone

    def _entries_sharing_watches_below(self, path: bytes) -> list[bytes]:
        """Paths of the entries elsewhere in the tree whose watch descriptor an entry
        at or below ``path`` has too: removing those watches removes theirs."""
        top = self._find_node_by_path(path)
        out: list[bytes] = []
        todo = [top] if top is not None and top is not self._root else []
        while todo:
            node = todo.pop()
            todo += node.children.values()
            owner = self._nodes_by_wd.get(node.wd)
            if owner not in (None, node) and (elsewhere := self._resolve_path(node.wd)):
                out.append(elsewhere)
        return out

    def _watch_all_below(self, top: bytes) -> None:
        for here in directories_below(top, self.path):
            node = self._find_node_by_path(here)
            if node is not None and self._nodes_by_wd.get(node.wd) is not node:
                node.wd = _INVALID_WD  # its watch went with another entry's: ask again
            with contextlib.suppress(OSError):  # gone meanwhile: its removal is an event too
                self._add_callback(here)


class _Emitter(InotifyEmitter):
    def on_thread_start(self) -> None:
        # InotifyEmitter.on_thread_start, with the mending group
        group = _MendingGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
        )
        if isinstance(self._inotify_fd, _ReportingFD):
            group.report = self._inotify_fd.report
        self._inotify = group


class _Observer(BaseObserver):
    def __init__(self, fd: _ReportingFD) -> None:
        self._fd = fd
        fd.start()
        super().__init__(_Emitter, timeout=1.0, inotify_fd=fd)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._fd.stop()
        self._fd.join()


def reporting_observer(root: str, report: Callable[[Change], None]) -> BaseObserver:
    """An observer (not started) whose watches of ``root`` report what watchdog keeps quiet."""
    return _Observer(_ReportingFD(root, report))
