"""The tree watcher's observer on watchdog 2.x (Debian 12 ships 2.2.1).

This watchdog gives each watched tree its own inotify descriptor (``Inotify``)
read by an ``InotifyBuffer`` thread, and has no hook before its own handling
of a raw event: it drops the queue overflow event (watch descriptor -1) in
``Inotify.read_events`` and swallows the watch limit for directories created
later. So :class:`_ReportingInotify` overrides ``_add_watch`` (the watch
limit, and ``IN_MOVE_SELF`` on the root) and ``read_events``: the latter is
watchdog 2.2's own, with the overflow and the root's move or unmount reported.

mypy checks this module against a newer watchdog that lacks these classes:
they are ``Any`` to it, hence the ``type: ignore[misc]`` on each subclass.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import watchdog.observers.inotify as watchdog_inotify
import watchdog.observers.inotify_c as watchdog_inotify_c
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify_buffer import Inotify, InotifyBuffer
from watchdog.utils import BaseThread
from watchdog.utils.delayed_queue import DelayedQueue

from mosqit_failover.sync.change import Change

IN_CREATE = 0x00000100
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000
_BUFFER_SIZE: int = watchdog_inotify_c.DEFAULT_EVENT_BUFFER_SIZE
_Event: Any = watchdog_inotify_c.InotifyEvent  # watchdog 2.x: (wd, mask, cookie, name, src_path)
_Emitter: Any = watchdog_inotify.InotifyEmitter


class _ReportingInotify(Inotify):  # type: ignore[misc]
    """watchdog 2.x's inotify descriptor of one tree, telling us about overflow,
    the watch limit and the root moved away or unmounted."""

    def __init__(self, path: bytes, recursive: bool, report: Callable[[Change], None]) -> None:
        self._report = report
        self._root_wd: int | None = None
        try:
            super().__init__(path, recursive)  # adds the watches: _add_watch below
        except BaseException:
            # watchdog 2.x leaves the descriptor open when a watch fails (the limit)
            if isinstance(getattr(self, "_inotify_fd", None), int):
                os.close(self._inotify_fd)
            raise

    def _add_watch(self, path: bytes, mask: int) -> int:
        root = path == self._path
        if root:
            mask |= IN_MOVE_SELF  # not in watchdog 2.x's mask: it would miss the root's rename
        try:
            wd = int(super()._add_watch(path, mask))
        except OSError as error:
            # watchdog skips a directory created later that it cannot watch: say so
            if error.errno in (errno.ENOSPC, errno.EMFILE):
                self._report(Change("limit", os.fsdecode(path)))
            raise
        if root:
            self._root_wd = wd
        return wd

    def _note(self, wd: int, mask: int) -> None:
        """Report what watchdog keeps quiet, from one raw event."""
        if wd == -1 and mask & IN_Q_OVERFLOW:
            self._report(Change("full", "inotify queue overflow"))
        elif wd == self._root_wd and mask & IN_MOVE_SELF:
            self._report(Change("lost", "the directory itself was moved away"))
        elif wd == self._root_wd and mask & IN_UNMOUNT:
            self._report(Change("lost", "the directory's filesystem was unmounted"))

    # Below: watchdog 2.2.1's Inotify.read_events (Apache-2.0, Copyright 2011 Yesudeep
    # Mangalapilly, 2012 Google, Inc & contributors), reformatted, with one addition:
    # the self._note call. The bookkeeping of watches across renames is watchdog's.

    def read_events(self, event_buffer_size: int = _BUFFER_SIZE) -> list[Any]:
        """Reads events from inotify and returns them."""

        def _recursive_simulate(src_path: bytes) -> list[Any]:
            # watch (and report) what a new directory already holds
            events = []
            for root, dirnames, filenames in os.walk(src_path):
                for dirname in dirnames:
                    try:
                        full_path = os.path.join(root, dirname)
                        wd_dir = self._add_watch(full_path, self._event_mask)
                        e = _Event(wd_dir, IN_CREATE | IN_ISDIR, 0, dirname, full_path)
                        events.append(e)
                    except OSError:
                        pass
                for filename in filenames:
                    full_path = os.path.join(root, filename)
                    wd_parent_dir = self._wd_for_path[os.path.dirname(full_path)]
                    e = _Event(wd_parent_dir, IN_CREATE, 0, filename, full_path)
                    events.append(e)
            return events

        while True:
            try:
                event_buffer = os.read(self._inotify_fd, event_buffer_size)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno == errno.EBADF:
                    return []
                raise
            break

        with self._lock:
            event_list = []
            for wd, mask, cookie, name in Inotify._parse_event_buffer(event_buffer):
                self._note(wd, mask)
                if wd == -1:
                    continue
                wd_path = self._path_for_wd[wd]
                src_path = os.path.join(wd_path, name) if name else wd_path
                inotify_event = _Event(wd, mask, cookie, name, src_path)

                if inotify_event.is_moved_from:
                    self.remember_move_from_event(inotify_event)
                elif inotify_event.is_moved_to:
                    move_src_path = self.source_for_move(inotify_event)
                    if move_src_path in self._wd_for_path:
                        moved_wd = self._wd_for_path[move_src_path]
                        del self._wd_for_path[move_src_path]
                        self._wd_for_path[inotify_event.src_path] = moved_wd
                        self._path_for_wd[moved_wd] = inotify_event.src_path
                        if self.is_recursive:
                            for _path, _wd in self._wd_for_path.copy().items():
                                if _path.startswith(move_src_path + os.path.sep.encode()):
                                    moved_wd = self._wd_for_path.pop(_path)
                                    _move_to_path = _path.replace(
                                        move_src_path, inotify_event.src_path
                                    )
                                    self._wd_for_path[_move_to_path] = moved_wd
                                    self._path_for_wd[moved_wd] = _move_to_path
                    src_path = os.path.join(wd_path, name)
                    inotify_event = _Event(wd, mask, cookie, name, src_path)

                if inotify_event.is_ignored:
                    # Clean up book-keeping for deleted watches.
                    path = self._path_for_wd.pop(wd)
                    if self._wd_for_path[path] == wd:
                        del self._wd_for_path[path]

                event_list.append(inotify_event)

                if self.is_recursive and inotify_event.is_directory and inotify_event.is_create:
                    try:
                        self._add_watch(src_path, self._event_mask)
                    except OSError:
                        continue

                    event_list.extend(_recursive_simulate(src_path))

        return event_list


class _ReportingBuffer(InotifyBuffer):  # type: ignore[misc]
    """watchdog 2.x's reader thread of one tree, on a :class:`_ReportingInotify`."""

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
