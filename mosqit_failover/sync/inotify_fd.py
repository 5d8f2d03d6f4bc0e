"""The tree watcher's observer on watchdog with one shared ``InotifyFD`` reader (7.x).

This watchdog reads every watch of an observer from one inotify descriptor
(``InotifyFD``); subclassing that reader shows us each raw event before
watchdog handles it, and each watch as it is added.

It handles events well after it read them on a loaded machine, and watches a
new directory by the path it had when it was made: if a directory above was
renamed since, that watch fails, and files made there later went unseen. The
rename's own event comes later in the queue, so after watchdog handled a
directory renamed into place, everything below it that is not watched is
watched (:func:`_watch_below`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from typing import Any

from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyConstants, InotifyFD

from mosqit_failover.sync.change import Change, raw_event_change, watch_failed_change

# A directory renamed inside the tree is watched again under its new name with the
# same watch descriptor; watchdog then replaces its callback (documented) and warns,
# with a repr of every watch of the tree: kilobytes per rename in the journal, about
# nothing wrong. The filter is process-wide, so it names that one message only.
warnings.filterwarnings(
    "ignore", message=r"Callback with id '\d+' already exists for watch", category=RuntimeWarning
)


class _ReportingFD(InotifyFD):
    """watchdog's inotify reader, telling us about overflow, the watch limit and the
    root moved away (watchdog would go on watching it under its old name)."""

    def __init__(self, root: str, report: Callable[[Change], None]) -> None:
        super().__init__()
        self._root = os.fsencode(root)
        self._root_wd: Any = None
        self._report = report

    def handle_event(self, event: Any) -> None:
        if (change := raw_event_change(event.wd, event.mask, self._root_wd)) is not None:
            self._report(change)
        groups = self._groups_of(event.wd) if event.is_moved_to and event.is_directory else []
        super().handle_event(event)
        for group in groups:
            _watch_below(group, event, self._report)

    def _groups_of(self, wd: Any) -> list[Any]:
        with self._lock:
            watch = self._watch_for_wd.get(wd)
            return list(watch.callbacks.values()) if watch is not None else []

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
                self._report(change)
            raise


# the lock is an instance attribute of this dataclass: not looked for here
_CAN_WATCH_BELOW = all(
    hasattr(InotifyWatchGroup, name)
    for name in ("is_active", "_build_event_source_path", "_add_all_callbacks")
)


def _watch_below(group: Any, event: Any, report: Callable[[Change], None]) -> None:
    """Watch what is not watched below the directory ``event`` renamed into place.

    Known directories cost one lookup each. Files made in a directory before its
    watch was added are sent anyway: a directory renamed in is sent whole.
    """
    if not isinstance(group, InotifyWatchGroup) or not group.is_recursive:
        return
    if not _CAN_WATCH_BELOW:  # a watchdog whose insides changed again: rescan instead
        report(Change("full", "a directory was renamed; this watchdog cannot watch below it"))
        return
    with group._lock:
        if not group.is_active:
            return
        destination = group._build_event_source_path(event)
        if destination is not None:
            with contextlib.suppress(OSError):  # gone meanwhile: its removal is an event too
                group._add_all_callbacks(destination)


class _Observer(BaseObserver):
    def __init__(self, fd: _ReportingFD) -> None:
        self._fd = fd
        fd.start()
        super().__init__(InotifyEmitter, timeout=1.0, inotify_fd=fd)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._fd.stop()
        self._fd.join()


def reporting_observer(root: str, report: Callable[[Change], None]) -> BaseObserver:
    """An observer (not started) whose watches of ``root`` report what watchdog keeps quiet."""
    return _Observer(_ReportingFD(root, report))
