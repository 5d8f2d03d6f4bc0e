"""The tree watcher's observer on watchdog 2.x to 6.x (Debian 12 ships 2.2.1).

This watchdog gives each watched tree its own inotify descriptor (``Inotify``)
read by an ``InotifyBuffer`` thread, and has no hook before its own handling
of a raw event: ``Inotify.read_events`` drops the queue overflow event (watch
descriptor -1) as it parses the buffer, and it swallows the watch limit for
directories created later. So:

- :class:`_ReportingInotify` overrides ``_add_watch`` (the watch limit, and
  ``IN_MOVE_SELF`` on the root, which watchdog does not ask for);
- the parser ``Inotify._parse_event_buffer``, a static method that
  ``read_events`` calls through the class, is wrapped once per process: while
  a :class:`_ReportingInotify` reads in a thread, each raw event also goes to
  its :meth:`_ReportingInotify._note` (overflow, the root moved or unmounted).
  Other ``Inotify`` readers are not affected. This leaves watchdog's own
  bookkeeping of watches across renames untouched, in every version;
- after each read, everything below a directory renamed into place that
  watchdog left unwatched is watched (:meth:`_ReportingInotify._watch_moved_in`):
  watchdog 2.x carries watches only along renames whose source it watched, and
  watches a new directory by the path it had when it was made, so a directory
  moved in from outside, made and renamed before watchdog read its creation,
  or made just before a directory above it was renamed, stayed unwatched, and
  files made in it later were never synced;
- a failure of watchdog's path bookkeeping while parsing (a KeyError) would end
  its reader thread, and every later change would go unseen: it is reported as
  a "full" change (a rescan) instead.

mypy checks this module against a newer watchdog that lacks these classes:
they are ``Any`` to it, hence the ``type: ignore[misc]`` on each subclass.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import watchdog.observers.inotify as watchdog_inotify
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify_buffer import Inotify, InotifyBuffer
from watchdog.utils import BaseThread
from watchdog.utils.delayed_queue import DelayedQueue

from mosqit_failover.sync.change import (
    IN_MOVE_SELF,
    Change,
    directories_below,
    raw_event_change,
    watch_failed_change,
)

_Emitter: Any = watchdog_inotify.InotifyEmitter

_reading = threading.local()  # .inotify: the _ReportingInotify reading in this thread


def _hook_the_parser() -> None:
    """Let each raw event through ``_note`` of the reader reading it (once per process)."""
    original = Inotify.__dict__["_parse_event_buffer"].__func__
    if getattr(original, "reports_to_mosqit", False):
        return

    def parse(event_buffer: bytes) -> Iterator[tuple[int, int, int, bytes]]:
        reader = getattr(_reading, "inotify", None)
        for wd, mask, cookie, name in original(event_buffer):
            if reader is not None:
                reader._note(wd, mask)
            yield wd, mask, cookie, name

    parse.reports_to_mosqit = True  # type: ignore[attr-defined]
    Inotify._parse_event_buffer = staticmethod(parse)


_hook_the_parser()


class _ReportingInotify(Inotify):  # type: ignore[misc]
    """watchdog's inotify descriptor of one tree, telling us about overflow, the
    watch limit and the root moved away or unmounted."""

    def __init__(self, path: bytes, recursive: bool, report: Callable[[Change], None]) -> None:
        self._report = report
        self._root_wd: int | None = None
        self._older_moves: set[int] = set()
        try:
            super().__init__(path, recursive=recursive)  # adds the watches: _add_watch below
        except BaseException:
            self._close_after_failed_start()
            raise

    def _close_after_failed_start(self) -> None:
        # watchdog leaves the descriptor open when a watch fails (the limit)
        if hasattr(self, "_close_resources"):  # watchdog 5+: the descriptor and a pipe
            self._close_resources()
        elif isinstance(getattr(self, "_inotify_fd", None), int):
            os.close(self._inotify_fd)

    def _add_watch(self, path: bytes, mask: int) -> int:
        root = path == self._path
        if root:
            mask |= IN_MOVE_SELF  # not in watchdog's mask: it would miss the root's rename
        try:
            wd = int(super()._add_watch(path, mask))
        except OSError as error:
            # watchdog skips a directory created later that it cannot watch: say so
            if (change := watch_failed_change(error, path)) is not None:
                self._report(change)
            raise
        if root:
            self._root_wd = wd
        return wd

    def read_events(self, *args: Any, **kwargs: Any) -> list[Any]:
        _reading.inotify = self  # the parser hook reports to us while we read
        try:
            events = list(super().read_events(*args, **kwargs))
        except (KeyError, ValueError) as error:
            # watchdog's own bookkeeping of paths failed: its reader thread would die and
            # every later change go unseen. The events of this read are lost: say so.
            self._report(Change("full", f"inotify event bookkeeping failed: {error!r}"))
            return []
        finally:
            _reading.inotify = None
        self._forget_old_moves()
        if self.is_recursive:
            for event in events:
                if event.is_moved_to and event.is_directory:
                    self._watch_moved_in(event.src_path)
            if any(event.is_move and event.is_directory for event in events):
                self._forget_stale_paths()
        return events

    def _forget_stale_paths(self) -> None:
        """Make the map from paths to watches the inverse of the map from watches to
        paths (by which events are named) again. watchdog 2.x keeps the path of a
        directory moved out of the tree: moved back in under another name, its watch
        stayed filed under the old name too, and a file later renamed from that name
        took the watch along, so changes in the directory were reported under the
        file's new name and missed under their own."""
        with self._lock:
            path_for_wd = getattr(self, "_path_for_wd", None)
            wd_for_path = getattr(self, "_wd_for_path", None)
            if isinstance(path_for_wd, dict) and isinstance(wd_for_path, dict):
                # two watches named by one path (a directory moved out, still watched,
                # and a new one made at its name): the one filed there already stays
                rebuilt: dict[bytes, int] = {}
                for wd, path in path_for_wd.items():
                    if path not in rebuilt or wd_for_path.get(path) == wd:
                        rebuilt[path] = wd
                wd_for_path.clear()
                wd_for_path.update(rebuilt)

    def _forget_old_moves(self) -> None:
        """watchdog 2.x keeps the record of every "moved from" event for ever (nothing
        calls its ``clear_move_records``): a spool's renames (a mail queue's tmp to new)
        grew the agent without bound, 222 MB for 100,000 renames. The two halves of a
        rename come in one read or the next: a record two reads old is dropped (a half
        later still is a delete and a create, which the sync handles as well)."""
        records = getattr(self, "_moved_from_events", None)
        if not isinstance(records, dict):
            return
        for cookie in self._older_moves:
            records.pop(cookie, None)
        self._older_moves = set(records)

    def _watch_moved_in(self, top: bytes) -> None:
        """Watch a directory renamed into place, and all below it, where watchdog did not.

        watchdog 2.x only carries watches along with a rename whose source it watched,
        and watches a new directory by the path it had when it read its creation: a
        directory moved in from outside, made and renamed before watchdog read its
        creation, or made just before a directory above it was renamed (its watch then
        fails: the path is gone), stays unwatched for good, and so does everything made
        in it later. The rename that made such a path stale comes later in the queue,
        so every directory renamed into place is walked whole; a directory already
        watched costs one system call. The rename itself is reported (a "tree" or a
        "move" whose destination is sent whole); the watches are added before the event
        is handed on, so what the listing of the destination misses, a watch sees.
        """
        with self._lock:
            for here in directories_below(top, self._path):
                with contextlib.suppress(OSError):  # gone meanwhile, or the watch limit
                    self._add_watch(here, self._event_mask)

    def _note(self, wd: int, mask: int) -> None:
        """Report what watchdog keeps quiet, from one raw event."""
        if (change := raw_event_change(wd, mask, self._root_wd)) is not None:
            self._report(change)


class _ReportingBuffer(InotifyBuffer):  # type: ignore[misc]
    """watchdog's reader thread of one tree, on a :class:`_ReportingInotify`."""

    def __init__(self, inotify: _ReportingInotify) -> None:
        # InotifyBuffer.__init__, which would make a plain Inotify
        BaseThread.__init__(self)
        self._queue: DelayedQueue[Any] = DelayedQueue(self.delay)
        self._inotify = inotify
        self.start()


def reporting_observer(root: str, report: Callable[[Change], None]) -> BaseObserver:
    """An observer (not started) whose watch of ``root`` reports what watchdog keeps quiet."""

    class Emitter(_Emitter):  # type: ignore[misc]
        def on_thread_start(self) -> None:
            # InotifyEmitter.on_thread_start, on the reporting classes
            path = os.fsencode(self.watch.path)
            inotify = _ReportingInotify(path, self.watch.is_recursive, report)
            self._inotify = _ReportingBuffer(inotify)

    return BaseObserver(Emitter, timeout=1.0)
