"""Which file-system operation becomes which replication records, and which must wait.

Pure: no I/O. The file system (:mod:`.fs`) first does the operation on the local
directory, then asks a :class:`Namespace` for the :class:`Step` that replicates it,
sends its records in order and, when ``step.sync`` is true, returns to the
application only once every reachable standby acknowledged them (a
:class:`~.records.Commit` barrier). Plain ``write()`` is not a sync point (close-to-open
consistency, as NFS); these are:

- ``close()`` of a file opened for writing (FUSE ``flush``, sent by every close of the
  descriptor or a dup of it; ``release`` comes later and asynchronously, so it cannot be),
  ``fsync()``/``fdatasync()`` (and ``fsync`` of a directory);
- ``rename()`` (also over an existing file), ``unlink()``, ``mkdir()``, ``rmdir()``,
  ``symlink()``, ``link()``;
- ``chmod``/``chown``/``truncate``/``utimens`` (``setattr``).

A barrier covers every record sent before it, whoever sent it: a close waits for the
writes of every handle (a file written by two processes), never for fewer.

The namespace knows, for each inode the kernel holds, its names (parent inode, name):
a path for the records is made of them. A file with several hard links has several
names, any of which reaches its data on the standby. A file that lost its last name
(unlinked while open, or replaced by a rename) keeps its inode and handles, but its
writes need no record: nobody can reach its data any more, here or there.

Inode numbers are the file system's own (from 2; 1 is the root); ``key`` is the local
file's (st_dev, st_ino), so that two names of one file get one inode. st_ino alone is not
enough: on overlayfs (a container's root) directories and files report different st_dev
and their numbers overlap (a new file took the root's key after 27 creates in the lab).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mosqit_failover.syncfs.records import (
    KEEP_ID,
    Chmod,
    Chown,
    Create,
    Link,
    Mkdir,
    Record,
    Rename,
    Rmdir,
    SetSize,
    Symlink,
    Unlink,
    Utimes,
    Write,
)

ROOT = 1
Key = tuple[int, int] | int
"""What identifies a local file: (st_dev, st_ino) (the unit tests' plain numbers too)."""


@dataclass(frozen=True)
class Step:
    """The records replicating one operation, and whether it waits for the standbys."""

    records: tuple[Record, ...] = ()
    sync: bool = False


NOTHING = Step()


@dataclass(frozen=True)
class Times:
    atime_ns: int
    mtime_ns: int


@dataclass
class _Node:
    key: Key
    is_dir: bool
    names: set[tuple[int, bytes]] = field(default_factory=set)
    lookups: int = 0
    handles: int = 0


@dataclass
class _Handle:
    inode: int
    writable: bool
    dirty: bool = False


class UnknownInode(KeyError):
    """The kernel named an inode or handle this file system does not know (a bug)."""


class Namespace:
    """The names of the inodes the kernel knows, and the records of each operation."""

    def __init__(self, root_key: Key) -> None:
        self._nodes: dict[int, _Node] = {ROOT: _Node(root_key, True, lookups=1)}
        self._by_key: dict[Key, int] = {root_key: ROOT}
        self._entries: dict[tuple[int, bytes], int] = {}
        self._handles: dict[int, _Handle] = {}
        self._next = ROOT + 1

    # -- names ---------------------------------------------------------------

    def _node(self, inode: int) -> _Node:
        try:
            return self._nodes[inode]
        except KeyError:
            raise UnknownInode(f"inode {inode} is not known") from None

    def known(self, inode: int) -> bool:
        return inode in self._nodes

    def path(self, inode: int) -> bytes | None:
        """A path of ``inode`` (b"" for the root), or None if it has no name any more."""
        parts: list[bytes] = []
        seen = 0
        while inode != ROOT:
            node = self._nodes.get(inode)
            if node is None or not node.names:
                return None
            parent, name = min(node.names)
            parts.append(name)
            inode = parent
            seen += 1
            if seen > 4096:  # a cycle would be a bug; never loop for ever
                return None
        return b"/".join(reversed(parts))

    def child(self, parent: int, name: bytes) -> bytes | None:
        """The path of ``name`` in directory ``parent`` (None if the parent has no name)."""
        base = self.path(parent)
        if base is None:
            return None
        return base + b"/" + name if base else name

    def inode_of(self, parent: int, name: bytes) -> int | None:
        return self._entries.get((parent, name))

    def names(self, inode: int) -> set[tuple[int, bytes]]:
        return set(self._node(inode).names)

    def is_dir(self, inode: int) -> bool:
        return self._node(inode).is_dir

    def lookups(self, inode: int) -> int:
        return self._node(inode).lookups

    def _drop_name(self, parent: int, name: bytes) -> None:
        inode = self._entries.pop((parent, name), None)
        if inode is None:
            return
        node = self._nodes[inode]
        node.names.discard((parent, name))
        if not node.names and self._by_key.get(node.key) == inode:
            del self._by_key[node.key]  # the number may be reused by a new file
        self._maybe_free(inode)

    def _maybe_free(self, inode: int) -> None:
        node = self._nodes.get(inode)
        if node is None or inode == ROOT or node.lookups > 0 or node.handles > 0:
            return
        del self._nodes[inode]
        for entry in node.names:
            if self._entries.get(entry) == inode:
                del self._entries[entry]
        if self._by_key.get(node.key) == inode:
            del self._by_key[node.key]

    def entry(self, parent: int, name: bytes, key: Key, is_dir: bool) -> int:
        """The inode of ``name`` in ``parent`` (local st_ino ``key``), one lookup more.

        Called for every entry the kernel learns: lookup, readdirplus, create, mkdir,
        symlink, link. Replicates nothing."""
        self._node(parent)
        old = self._entries.get((parent, name))
        inode = self._by_key.get(key)
        if old is not None and old != inode:
            self._drop_name(parent, name)  # changed under us: the new file wins
        if inode is None:
            inode = self._next
            self._next += 1
            self._nodes[inode] = _Node(key, is_dir)
            self._by_key[key] = inode
        node = self._nodes[inode]
        node.names.add((parent, name))
        self._entries[(parent, name)] = inode
        node.lookups += 1
        return inode

    def forget(self, inode: int, count: int) -> None:
        node = self._nodes.get(inode)
        if node is None or inode == ROOT:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_free(inode)

    # -- files ---------------------------------------------------------------

    def open(self, inode: int, fh: int, writable: bool, truncate: bool = False) -> Step:
        """A handle opened; with O_TRUNC the file is cut first (synced by its close)."""
        node = self._node(inode)
        node.handles += 1
        self._handles[fh] = _Handle(inode, writable, dirty=truncate)
        path = self.path(inode)
        if truncate and path is not None:
            return Step((SetSize(path, 0),))
        return NOTHING

    def create(
        self, parent: int, name: bytes, key: Key, fh: int, mode: int, uid: int, gid: int
    ) -> tuple[int, Step]:
        """A new regular file, open for writing; not a sync point (its close is)."""
        inode = self.entry(parent, name, key, is_dir=False)
        self.open(inode, fh, writable=True)
        self._handles[fh].dirty = True
        path = self.child(parent, name)
        if path is None:
            return inode, NOTHING
        return inode, Step((Create(path, mode, uid, gid),))

    def _handle(self, fh: int) -> _Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise UnknownInode(f"file handle {fh} is not open") from None

    def handle_inode(self, fh: int) -> int:
        return self._handle(fh).inode

    def write(self, fh: int, offset: int, data: bytes) -> Step:
        handle = self._handle(fh)
        handle.dirty = True
        path = self.path(handle.inode)
        if path is None or not data:
            return NOTHING
        return Step((Write(path, offset, data),))

    def _settle(self, handle: _Handle, times: Times | None) -> Step:
        """The barrier of a written handle: its times as the application sees them last."""
        path = self.path(handle.inode)
        records: tuple[Record, ...] = ()
        if handle.dirty and times is not None and path is not None:
            records = (Utimes(path, times.atime_ns, times.mtime_ns),)
        handle.dirty = False
        return Step(records, sync=True)

    def flush(self, fh: int, times: Times | None = None) -> Step:
        """close() (of this descriptor or a dup): a sync point if opened for writing."""
        handle = self._handle(fh)
        if not handle.writable:
            return NOTHING
        return self._settle(handle, times)

    def fsync(self, fh: int, times: Times | None = None) -> Step:
        """fsync()/fdatasync(): always a sync point."""
        return self._settle(self._handle(fh), times)

    def release(self, fh: int) -> Step:
        """The last close of an open file description: nothing left to send (flush did)."""
        handle = self._handles.pop(fh, None)
        if handle is None:
            return NOTHING
        node = self._nodes.get(handle.inode)
        if node is not None:
            node.handles -= 1
            self._maybe_free(handle.inode)
        return NOTHING

    def setattr(
        self,
        inode: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        times: Times | None = None,
    ) -> Step:
        """chmod, chown, truncate, utimens (any of them at once): a sync point."""
        path = self.path(inode)
        if path is None:
            return Step((), sync=True)
        records: list[Record] = []
        if size is not None:
            records.append(SetSize(path, size))
        if uid is not None or gid is not None:
            records.append(Chown(path, _id(uid), _id(gid)))
        if mode is not None:
            records.append(Chmod(path, mode))
        if times is not None:
            records.append(Utimes(path, times.atime_ns, times.mtime_ns))
        return Step(tuple(records), sync=True)

    # -- directories and names -----------------------------------------------

    def mkdir(
        self, parent: int, name: bytes, key: Key, mode: int, uid: int, gid: int
    ) -> tuple[int, Step]:
        inode = self.entry(parent, name, key, is_dir=True)
        path = self.child(parent, name)
        return inode, Step((Mkdir(path, mode, uid, gid),) if path else (), sync=True)

    def symlink(
        self, parent: int, name: bytes, key: Key, target: bytes, uid: int, gid: int
    ) -> tuple[int, Step]:
        inode = self.entry(parent, name, key, is_dir=False)
        path = self.child(parent, name)
        return inode, Step((Symlink(path, target, uid, gid),) if path else (), sync=True)

    def link(self, inode: int, parent: int, name: bytes) -> Step:
        """A hard link: the standby links the same file (any of its names) to the new name."""
        src = self.path(inode)
        key = self._node(inode).key
        self.entry(parent, name, key, is_dir=False)
        dst = self.child(parent, name)
        if src is None or dst is None:
            return Step((), sync=True)
        return Step((Link(src, dst),), sync=True)

    def unlink(self, parent: int, name: bytes) -> Step:
        path = self.child(parent, name)
        self._drop_name(parent, name)
        return Step((Unlink(path),) if path else (), sync=True)

    def rmdir(self, parent: int, name: bytes) -> Step:
        path = self.child(parent, name)
        self._drop_name(parent, name)
        return Step((Rmdir(path),) if path else (), sync=True)

    def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes) -> Step:
        """rename(2): what ``new_name`` was loses that name (it may live on while open)."""
        src = self.child(parent, name)
        dst = self.child(new_parent, new_name)
        moved = self._entries.get((parent, name))
        if (parent, name) != (new_parent, new_name):
            self._drop_name(new_parent, new_name)
            if moved is not None:
                node = self._nodes[moved]
                del self._entries[(parent, name)]
                node.names.discard((parent, name))
                node.names.add((new_parent, new_name))
                self._entries[(new_parent, new_name)] = moved
        if src is None or dst is None or src == dst:
            return Step((), sync=True)
        return Step((Rename(src, dst),), sync=True)

    def fsyncdir(self) -> Step:
        return Step((), sync=True)


def _id(value: int | None) -> int:
    return KEEP_ID if value is None or value < 0 else value
