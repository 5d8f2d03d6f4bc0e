"""The watches of one directory tree, and what their inotify events mean.

inotify names an event by a watch descriptor (one per directory) and an entry
name; the path is ours to keep. Each watched directory is filed under its
parent's descriptor and its name, so a rename moves one entry and the paths
below follow it. The events are read late (a busy machine, a held reader):
by then a path computed from them may name another directory, or none. Three
rules keep every directory of the tree watched all the same:

- A walk is the truth. Every directory created or renamed into the tree is
  walked, each directory watched before it is listed, and each descriptor the
  kernel returns is filed where the walk found it; whatever was filed there
  before is unplaced.
- A stale place is mended by a later event. If a path no longer names the
  directory the events said, the directory now there got there by a create or
  a rename that is still queued, and its walk files it right.
- Saying too much is safe, too little is not. Each change names a path whose
  present state the engine sends; a wrong name costs a look, a missing one a
  lost file. So a created or moved-in directory is reported whole.

Unplaced watches are removed at the end of each read: the directory is outside
the tree, or its queued event watches it again (and reports it whole).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable

from mosqit_failover.sync.change import Change
from mosqit_failover.sync.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_DONT_FOLLOW,
    IN_EXCL_UNLINK,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Event,
    Inotify,
)
from mosqit_failover.sync.listing import OPEN_DIRECTORY, Identity, identity

_ROOT_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_EXCL_UNLINK
)
# below the root a symbolic link is an entry, never a directory to watch
_DIR_MASK = _ROOT_MASK | IN_DONT_FOLLOW
# a directory above the root: only its own rename or removal, which takes the root along
_ANCESTOR_MASK = IN_MOVE_SELF | IN_DELETE_SELF | IN_ONLYDIR
_CONTENT = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE
_LIMIT_ERRORS = (errno.ENOSPC, errno.EMFILE)
_PROC_FD = os.path.isdir("/proc/self/fd")

Place = tuple[int, bytes]  # the parent's watch descriptor and the entry's name
_Pair = tuple[Place, Place, bool]  # a rename: from, to, and whether a directory moved
_Step = tuple[bytes, int, bytes, Identity | None]  # a walk's next: path, parent, name, id


class WatchedTree:
    """The watches of ``root`` in one :class:`~.inotify.Inotify`; each event read
    goes to :meth:`handle`, and the changes it means to ``report``.

    Guarantees: every directory in the tree is watched once the events queued
    before it got there are handled (see the module's rules); a rename inside
    the tree is one "move" once both halves are handled, and :meth:`finish_moves`
    turns a half with no pair into a removal; "lost" is reported once, when the
    root or a directory above it is moved, deleted or unmounted; "full" when the
    kernel's queue overflowed (the tree is walked again); "limit" or
    "unwatchable" when a directory cannot be watched. Not thread-safe: one
    reader calls it.
    """

    def __init__(self, inotify: Inotify, root: str, report: Callable[[Change], None]) -> None:
        self._inotify = inotify
        self._root = os.fsencode(os.path.abspath(root))
        self._report = report
        self._root_wd = -1
        self._where: dict[int, Place | None] = {}  # None: unplaced, removed after this read
        self._unplaced: set[int] = set()  # kept apart: no scan of every watch per read
        self._children: dict[int, dict[bytes, int]] = {}
        self._inode: dict[int, Identity] = {}  # device and inode, when last watched
        self._ancestors: dict[int, bytes] = {}
        # by cookie: where the first half was, the directory's watch then, its path
        self._moved_from: dict[int, tuple[Place, int | None, bytes]] = {}
        self._lost = False
        self._mounts: set[bytes] | None = None  # mount points at or below the root
        self._mounts_above: set[bytes] = set()  # and above it
        self._last_pair: _Pair | None = None  # the last rename: (from, to, is a directory)

    def start(self) -> None:
        """Watch the root (OSError if it cannot be watched), every directory below it
        and the directories above it."""
        self._root_wd = self._inotify.add(self._root, _ROOT_MASK)
        self._walk_below(self._root_wd, self._root)
        self._watch_above()

    def _watch_above(self) -> None:
        """The directories above the root, last: under a tight watch limit the tree's
        own watches come first, and one missing above only misses its rename."""
        above = self._root
        while above != b"/":
            above = os.path.dirname(above)
            # unreadable, or the limit: its rename goes unseen, as with no watch at all
            with contextlib.suppress(OSError):
                self._ancestors[self._inotify.add(above, _ANCESTOR_MASK)] = above

    @property
    def moves_unpaired(self) -> bool:
        """A rename's first half is waiting for its second."""
        return bool(self._moved_from)

    @property
    def watched(self) -> int:
        """The directories watched, the root included."""
        return len(self._where) + 1

    def handle(self, events: list[Event]) -> None:
        """One read's events. A rename's first half left from the read before has had
        its chance (the kernel queues both halves at once; only a full read buffer
        splits them): with no second half in this read either, it went out of the tree.
        Under a steady stream of events the reader never waits for :meth:`finish_moves`."""
        waited = list(self._moved_from)
        for event in events:
            if self._lost:
                return
            self._handle(event)
        self.finish_moves(waited)
        self._drop_unplaced()

    def finish_moves(self, cookies: Iterable[int] | None = None) -> None:
        """The renames (all, or those of ``cookies``) whose second half never came
        went out of the tree."""
        chosen = list(self._moved_from) if cookies is None else cookies
        moved_out = [self._moved_from.pop(c) for c in chosen if c in self._moved_from]
        for place, wd, rel in moved_out:
            self._emit("path", rel)
            # the directory it left may have been renamed since (mv p/f /out; mv p q):
            # the path it had there now is gone from the peer too
            parent = self._path_of(place[0])
            now = _join(parent, place[1]) if parent is not None else rel
            if now != rel:
                self._emit("path", now)
            if wd is None or self._where.get(wd) != place:
                continue  # filed anew meanwhile: found elsewhere in the tree
            # The watch looked up for the rename may have been a newer directory at that
            # name (the map was stale); the walk, by the place's path now, keeps whatever
            # is there.
            if parent is None or self._walk(place[0], place[1], now) != wd:
                self._unwatch_below(wd)
        self._drop_unplaced()

    def mounts_seen(self, points: Iterable[bytes]) -> None:
        """The mount table now (every mount point, absolute): a filesystem mounted or
        unmounted in the tree changes what is there without an event of its own."""
        points = set(points)
        inside = {p for p in points if p == self._root or p.startswith(self._root + b"/")}
        above = {p for p in points if self._root.startswith(p.rstrip(b"/") + b"/")}
        if self._mounts is not None:
            if above != self._mounts_above:
                self._lose("a filesystem was mounted or unmounted on a directory above it")
                return
            for point in sorted(inside ^ self._mounts):
                if point == self._root:
                    self._lose("a filesystem was mounted on it, or unmounted from it")
                    return
                rel = point[len(self._root) + 1 :]
                parent = self._wd_at(os.path.dirname(rel))
                if point in inside and self._bound_twice(point):
                    self._twice(point)
                elif parent is not None:
                    self._walk(parent, os.path.basename(rel), rel)
                self._emit("mount", rel)  # once watched: what follows is seen either way
            self._drop_unplaced()
        else:
            for point in inside - {self._root}:
                if self._bound_twice(point):
                    self._twice(point)
        self._mounts, self._mounts_above = inside, above

    def _bound_twice(self, point: bytes) -> bool:
        """A directory of the tree mounted again at ``point`` (a bind mount): one watch
        cannot report its changes under both paths."""
        try:
            st = os.stat(point)
        except OSError:
            return False
        here = (st.st_dev, st.st_ino)
        rel = point[len(self._root) + 1 :]
        return any(
            ident == here and self._path_of(wd) not in (None, rel)
            for wd, ident in self._inode.items()
        )

    # ---- one event -------------------------------------------------------

    def _handle(self, event: Event) -> None:
        mask = event.mask
        if mask & IN_Q_OVERFLOW:
            self._overflowed()
        elif event.wd in self._ancestors:
            self._ancestor_event(event)
        elif not event.name:
            self._self_event(event)
        elif (parent := self._path_of(event.wd)) is not None:
            self._entry_event(event, _join(parent, event.name))

    def _ancestor_event(self, event: Event) -> None:
        if event.mask & (IN_MOVE_SELF | IN_DELETE_SELF | IN_UNMOUNT):
            above = os.fsdecode(self._ancestors[event.wd])
            self._lose(f"{above}, a directory above it, was moved, deleted or unmounted")
        elif event.mask & IN_IGNORED:
            del self._ancestors[event.wd]

    def _self_event(self, event: Event) -> None:
        mask = event.mask
        if event.wd == self._root_wd:
            if mask & IN_MOVE_SELF:
                self._lose("the directory itself was moved away")
            elif mask & IN_DELETE_SELF:
                self._lose("the directory itself was deleted")
            elif mask & IN_UNMOUNT:
                self._lose("the directory's filesystem was unmounted")
            elif mask & IN_IGNORED:
                self._lose("its watch was removed")
            elif mask & IN_ATTRIB:
                self._emit("path", b".")
        elif mask & IN_IGNORED:
            self._forget(event.wd)
        elif mask & IN_UNMOUNT and (rel := self._path_of(event.wd)) is not None:
            self._emit("mount", rel)  # a filesystem mounted there went: the one below shows

    def _entry_event(self, event: Event, rel: bytes) -> None:
        mask = event.mask
        is_dir = bool(mask & IN_ISDIR)
        if mask & IN_MOVED_FROM:
            moved = self._child((event.wd, event.name)) if is_dir else None
            self._moved_from[event.cookie] = ((event.wd, event.name), moved, rel)
        elif mask & IN_MOVED_TO:
            self._moved_to(event, rel, is_dir)
        elif mask & IN_CREATE:
            if is_dir:
                self._emit("tree", rel)
                self._walk(event.wd, event.name, rel)
            else:
                self._emit("new", rel)
        elif mask & IN_DELETE:
            self._emit("path", rel)
            if is_dir and (wd := self._child((event.wd, event.name))) is not None:
                self._unplace(wd)
        elif mask & _CONTENT:
            self._emit("path", rel)

    def _moved_to(self, event: Event, rel: bytes, is_dir: bool) -> None:
        source = self._moved_from.pop(event.cookie, None)
        if source is None:  # from outside the tree
            self._emit("tree" if is_dir else "path", rel)
        else:
            place, moved, src_rel = source
            self._report(Change("move", os.fsdecode(src_rel), os.fsdecode(rel), is_dir))
            pair = (place, (event.wd, event.name), is_dir)
            last, self._last_pair = self._last_pair, pair
            if last is not None and (last[1], last[0]) == pair[:2]:
                self._exchanged(last, pair, src_rel, rel)
                return
            if moved is not None and self._where.get(moved) == place:
                self._place(moved, event.wd, event.name)
        if is_dir:
            self._walk(event.wd, event.name, rel)

    def _exchanged(self, first: _Pair, second: _Pair, one: bytes, other: bytes) -> None:
        """Two renames, each the other reversed: a name renamed back, or renameat2's
        RENAME_EXCHANGE swapped two names. The second's watch was looked up at a name
        the first had already given away: both places are walked again. The peer
        replays the two renames one after the other, which swaps files but not
        directories (the second rename finds a directory in the way), nor can it tell
        which of the two it was by the time it reads them (one name may be gone since):
        with a directory in it, a full sync."""
        if first[2] or second[2]:
            names = f"{os.fsdecode(one)} and {os.fsdecode(other)}"
            self._report(Change("full", f"{names} were exchanged"))
        self._last_pair = None
        for (parent, name), rel in ((second[0], one), (second[1], other)):
            self._walk(parent, name, rel)

    def _overflowed(self) -> None:
        """Events were lost: the whole tree is walked again, and sent whole."""
        self._report(Change("full", "inotify queue overflow: events were lost"))
        self._moved_from.clear()
        for wd in self._where:
            self._where[wd] = None
        self._unplaced = set(self._where)
        self._children.clear()
        self._walk_below(self._root_wd, self._root)

    # ---- the map ---------------------------------------------------------

    def _path_of(self, wd: int) -> bytes | None:
        """The path relative to the root (b"" for the root); None if not placed."""
        names: list[bytes] = []
        for _ in range(len(self._where) + 1):  # a loop in the map ends too
            if wd == self._root_wd:
                return b"/".join(reversed(names))
            place = self._where.get(wd)
            if place is None:
                return None
            wd, name = place
            names.append(name)
        return None

    def _child(self, place: Place) -> int | None:
        """The watch filed at ``place``, if any."""
        return self._children.get(place[0], {}).get(place[1])

    def _wd_at(self, rel: bytes) -> int | None:
        wd: int | None = self._root_wd
        for name in rel.split(b"/") if rel else ():
            wd = self._child((wd, name)) if wd is not None else None
        return wd

    def _place(self, wd: int, parent: int, name: bytes) -> None:
        if wd == self._root_wd or wd in self._ancestors:
            return  # the root seen below itself (a bind mount): not a second place
        old = self._where.get(wd)
        if old == (parent, name):
            return
        if old is not None and self._child(old) == wd:
            del self._children[old[0]][old[1]]
        siblings = self._children.setdefault(parent, {})
        if (other := siblings.get(name)) is not None and other != wd:
            self._where[other] = None
            self._unplaced.add(other)
        siblings[name] = wd
        self._where[wd] = (parent, name)
        self._unplaced.discard(wd)

    def _unplace(self, wd: int) -> None:
        place = self._where.get(wd)
        if place is not None and self._child(place) == wd:
            del self._children[place[0]][place[1]]
        if wd in self._where:
            self._where[wd] = None
            self._unplaced.add(wd)

    def _forget(self, wd: int) -> None:
        self._unplace(wd)
        self._where.pop(wd, None)
        self._unplaced.discard(wd)
        self._inode.pop(wd, None)
        for child in self._children.pop(wd, {}).values():
            self._unplace(child)

    def _unwatch_below(self, top: int) -> None:
        todo = [top]
        while todo:
            wd = todo.pop()
            todo += self._children.get(wd, {}).values()
            self._inotify.remove(wd)
            self._forget(wd)

    def _drop_unplaced(self) -> None:
        while self._unplaced:
            self._unwatch_below(self._unplaced.pop())

    # ---- walking -----------------------------------------------------------

    def _walk(self, parent: int, name: bytes, rel: bytes) -> int | None:
        """Watch ``rel`` (the entry ``name`` of ``parent``) and every directory below
        it; the watch of ``rel``, None if no directory is there. Only if the directory
        at ``rel``'s parent path is still ``parent``'s: a stale path (through a name
        since renamed, or replaced by a link to ``.``, to ``/``, to another directory
        of the tree) would file some other directory here, or leave the tree."""
        path = self._root + b"/" + rel
        try:
            fd = os.open(os.path.dirname(path), OPEN_DIRECTORY)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if self._inode.get(parent) != (st.st_dev, st.st_ino):
                return None
            entry = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not stat.S_ISDIR(entry.st_mode):
            return None
        return self._walk_from([(path, parent, name, (entry.st_dev, entry.st_ino))])

    def _walk_below(self, wd: int, path: bytes) -> None:
        opened = self._open(path, None)
        if opened is not None:
            self._walk_from([(path + b"/" + n, wd, n, ino) for n, ino in opened[1]])

    def _walk_from(self, todo: list[_Step]) -> int | None:
        """Each directory is opened without following a link, checked to be the
        inode its parent listed (a name swapped meanwhile is left to its event),
        watched, then listed: nothing made between goes unseen. No recursion: a tree
        a thousand levels deep is walked too. The watch of the first directory."""
        first: int | None = None
        seen: set[int] = set()
        while todo:
            path, parent, name, ino = todo.pop()
            opened = self._open(path, ino)
            if opened is None:
                continue
            wd, below = opened
            first = wd if first is None else first
            if wd == self._root_wd or wd in self._ancestors:
                self._twice(path)  # the root, or above it, bound inside the tree
                continue
            if wd in seen:  # moved into a part of the walk still to come: filed there
                self._place(wd, parent, name)  # (its subdirectories follow it)
                continue
            seen.add(wd)
            self._place(wd, parent, name)
            todo += [(path + b"/" + n, wd, n, i) for n, i in below]
        return first

    def _open(
        self, path: bytes, ino: Identity | None
    ) -> tuple[int, list[tuple[bytes, Identity]]] | None:
        """Watch the directory at ``path`` (if it is inode ``ino``, when given) through
        a descriptor, and list its subdirectories from it: its watch and the names and
        inodes of its subdirectories; None if it is gone, not a directory, or another."""
        try:
            fd = os.open(path, OPEN_DIRECTORY)
        except OSError as error:
            self._unwatchable(path, error)
            return None
        try:
            st = os.fstat(fd)
            if ino is not None and (st.st_dev, st.st_ino) != ino:
                return None
            if _PROC_FD:
                wd = self._inotify.add(b"/proc/self/fd/%d" % fd, _ROOT_MASK)
            else:  # no /proc: by name, the inode checked below the watch
                wd = self._inotify.add(path, _DIR_MASK)
                if os.lstat(path).st_ino != st.st_ino:
                    return None
            self._inode[wd] = (st.st_dev, st.st_ino)
            with os.scandir(fd) as listing:
                found = [(os.fsencode(e.name), identity(e)) for e in listing]
            return wd, [(name, ident) for name, ident in found if ident is not None]
        except OSError as error:
            self._unwatchable(path, error)
            return None
        finally:
            os.close(fd)

    def _unwatchable(self, path: bytes, error: OSError) -> None:
        if error.errno in _LIMIT_ERRORS:
            self._report(Change("limit", os.fsdecode(path)))
        elif error.errno == errno.ENAMETOOLONG:
            below = os.fsdecode(path[: len(self._root) + 80])
            self._report(Change("unwatchable", f"a path below {below}... is too long"))

    def _twice(self, path: bytes) -> None:
        rel = os.fsdecode(path[len(self._root) + 1 :])
        self._report(
            Change("unwatchable", f"{rel} is a directory also mounted elsewhere in the tree")
        )

    # ---- reporting ---------------------------------------------------------

    def _emit(self, kind: str, rel: bytes) -> None:
        self._report(Change(kind, os.fsdecode(rel)))

    def _lose(self, why: str) -> None:
        if not self._lost:
            self._lost = True
            self._report(Change("lost", why))


def _join(parent: bytes, name: bytes) -> bytes:
    """The path of entry ``name`` of the directory at ``parent`` (b"": the root)."""
    return parent + b"/" + name if parent else name
