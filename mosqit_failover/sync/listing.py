"""What a batch lists for rsync: the changed names, and the directories of its new trees,
never reached through a symbolic link. Runs in a worker thread (it looks at the disk).

rsync's sender opens each listed name by its path. A name below a directory that
became a symbolic link after the change was seen (``mkdir b; touch b/shadow``, then
``rm -r b; ln -s /etc b`` before the batch) would be read through the link: a file
from outside the synced directory copied to the peer. Walking a new tree by its path
would list the whole filesystem behind such a link. So, as the listing finds the disk:

- every directory above a listed name, below the synced directory, is a real
  directory: a name below a link (or a file) is replaced by that link, which rsync
  sends as a link;
- a new tree (created or moved in) is walked from descriptors opened without following
  links, each checked to be the directory its parent listed (device and inode);
- each directory of a new tree is listed as ``dir/.``: rsync sends its entries and,
  with ``--delete`` (:func:`.commands.batch_argv`), removes from the peer's copy what
  the source does not have there. A directory moved out and made anew
  (``mv b /out; mkdir b``) must not keep the old one's files on the peer;
- the synced directory itself (``.``) is never listed: rsync would send its entries and
  delete on the peer every top-level name the source lacks, which for an emptied or
  unmounted source is the whole copy. The engine sends a full sync for it instead,
  which holds back from an empty source;
- a tree where a filesystem was mounted or unmounted (``Batch.copies``) is listed entry
  by entry instead, which deletes nothing on the peer: an unmount may be a mistake, and
  its copy there is what is left (the full sync removes it later, as it would before);
- a name that is gone is listed as it is: ``--delete-missing-args`` deletes it there,
  unless an exclude may have matched it (``cache/`` matches only directories, and
  rsync cannot tell that a gone name was one);
- nothing at or below an excluded directory is listed (:mod:`.exclude`): rsync checks a
  listed name's own rules only, so ``cache/x`` would go out (or, gone, be deleted on the
  peer, which keeps its own excluded files) although ``cache`` is excluded, and
  ``cache/sub/.`` would mirror the standby's own excluded files away.

What is left: rsync reads the names a moment later, and a link swapped in between is
read through; rsync's own walk in a full sync has the same window.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence

from mosqit_failover.sync.exclude import excluded_here
from mosqit_failover.sync.plan import Batch

OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Open a directory itself: a symbolic link in its place fails (ELOOP or ENOTDIR)."""

ROOT = "."
"""The synced directory's own name in a change: never listed (see the module doc)."""

Identity = tuple[int, int]
"""A directory's device and inode as its path reaches it."""


def identity(entry: os.DirEntry[str]) -> Identity | None:
    """A subdirectory's device and inode as its path reaches it (a filesystem mounted
    there, an overlay: not the entry's own inode number); None if not a directory."""
    try:
        if not entry.is_dir(follow_symlinks=False):
            return None
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None  # gone meanwhile: its own change says so
    return st.st_dev, st.st_ino


def expand(root: str, batch: Batch, excludes: Sequence[str] = ()) -> list[str]:
    """The names to list for rsync (``--files-from``), sorted (see the module doc)."""
    below = _Below(root, excludes)
    entries = {
        below.reachable(p)
        for p in batch.paths
        if _inside(p) and not below.shut(p) and not below.gone_but_excluded(p)
    }
    for tree in batch.trees | batch.copies:
        if _inside(tree) and not below.excluded_directory(tree):
            entries.update(below.tree(tree, mirror=tree in batch.trees))
    return sorted(entries)


def _inside(rel: str) -> bool:
    """A name below the synced directory, not the directory itself by any spelling."""
    return posixpath.normpath(rel or ROOT) != ROOT


class _Below:
    """The directories below ``root`` as one listing finds them."""

    def __init__(self, root: str, excludes: Sequence[str]) -> None:
        self._root = root
        self._excludes = excludes
        self._dirs: dict[str, str | None] = {}  # directory -> None (real) or what to list
        self._shut: dict[str, bool] = {}  # directory -> whether it or one above is excluded

    def shut(self, rel: str) -> bool:
        """Whether a directory above ``rel`` is excluded."""
        parent = posixpath.dirname(rel)
        return bool(parent) and self.excluded_directory(parent)

    def excluded_directory(self, rel: str) -> bool:
        """Whether the directory ``rel``, or one above it, is excluded; each directory
        looked at once per listing (its own rules, then what is known above it)."""
        unknown: list[str] = []
        while rel and rel not in self._shut:
            unknown.append(rel)
            rel = posixpath.dirname(rel)
        shut = self._shut.get(rel, False)
        for directory in reversed(unknown):
            shut = shut or excluded_here(directory, self._excludes, True)
            self._shut[directory] = shut
        return shut

    def _path(self, rel: str) -> str:
        return posixpath.join(self._root, rel)

    def gone_but_excluded(self, rel: str) -> bool:
        """Whether ``rel`` is gone and may have been excluded (``cache/`` excludes a
        directory: rsync cannot tell that a gone name was one, and would delete the
        peer's own excluded ``cache`` for ``--delete-missing-args``)."""
        if not excluded_here(rel, self._excludes, None):
            return False
        return not os.path.lexists(self._path(rel))

    def reachable(self, rel: str) -> str:
        """``rel``, or the first directory above it that is a link or not a directory
        (what rsync must be given instead: it sends that name as what it is)."""
        parent = posixpath.dirname(rel)
        if not parent:
            return rel
        unknown: list[str] = []
        while parent and parent not in self._dirs:  # up to the nearest one known
            unknown.append(parent)
            parent = posixpath.dirname(parent)
        cut = self._dirs.get(parent) if parent else None
        for directory in reversed(unknown):  # then down, each below a real one
            if cut is None:
                cut = self._look(directory)
            self._dirs[directory] = cut
        return rel if cut is None else cut

    def _look(self, directory: str) -> str | None:
        try:
            mode = os.lstat(self._path(directory)).st_mode
        except FileNotFoundError:
            return None  # gone: rsync deletes the listed name on the peer
        except OSError:
            return None  # too long, a permission: rsync says what it finds
        return None if stat.S_ISDIR(mode) else directory

    def tree(self, rel: str, mirror: bool = True) -> list[str]:
        """Each directory of the new tree ``rel`` as ``dir/.`` (``mirror``), else each
        entry by its name (sent, nothing deleted); just the name, or the link above it,
        when no real directory is there."""
        name = self.reachable(rel)
        try:
            st = os.lstat(self._path(rel))
        except OSError:
            return [name]
        if name != rel or not stat.S_ISDIR(st.st_mode):
            return [name]
        listed: list[str] = []
        seen: set[Identity] = set()
        todo: list[tuple[str, Identity]] = [(rel, (st.st_dev, st.st_ino))]
        while todo:  # no recursion: a tree a thousand levels deep is listed too
            here, expected = todo.pop()
            found = self._list(here, expected, seen)
            if found is None:
                continue
            listed.append(f"{here}/." if mirror else here)
            for entry, ident in found:
                below = posixpath.join(here, entry)
                if ident is None:  # not a directory: the mirror's dir/. carries it
                    if not mirror and not excluded_here(below, self._excludes, False):
                        listed.append(below)
                elif not excluded_here(below, self._excludes, True):
                    todo.append((below, ident))
        return listed or [rel]

    def _list(
        self, rel: str, expected: Identity, seen: set[Identity]
    ) -> list[tuple[str, Identity | None]] | None:
        """The entries of ``rel`` (a subdirectory's identity, None for anything else) if
        it is still the directory ``expected`` and not met before in this walk (a bind
        mount inside); else None."""
        try:
            fd = os.open(self._path(rel), OPEN_DIRECTORY)
        except OSError:
            return None  # gone, or a link now: its own change follows
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != expected or expected in seen:
                return None
            seen.add(expected)
            with os.scandir(fd) as entries:
                found = [(entry.name, identity(entry)) for entry in entries]
        except OSError:
            return None
        finally:
            os.close(fd)
        self._dirs[rel] = None
        return found
