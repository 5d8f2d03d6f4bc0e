"""The pass-through file system of the synchronous mode, mounted over the directory itself.

:func:`open_root` opens the directory *before* the mount; every real operation is then
made relative to that descriptor (``dir_fd``), which still reaches the directory under
the mount: the data stays in place, and is the plain directory again once unmounted.

Each operation is done locally first, then replicated: the records of its
:class:`~.mapping.Step` go to every channel in the order of the local operations (no
``await`` between the local call and the send), and a sync point returns only once every
live channel acknowledged (:class:`~.channel.Replicator`). Created files get the caller's
uid and gid (the file system runs as root). Not supported: device nodes, FIFOs and
sockets (EPERM, as the rsync receiver creates none), ``RENAME_EXCHANGE`` (EINVAL), extended
attributes (ENOSYS: the kernel stops asking). Directory mtimes are not replicated.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import stat
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from mosqit_failover.syncfs.channel import NoStandby, Replicator
from mosqit_failover.syncfs.mapping import ROOT, Namespace, Step, Times
from mosqit_failover.syncfs.mountinfo import points_below

P = ParamSpec("P")
R = TypeVar("R")

_KERNEL_DOES = os.O_APPEND | os.O_DIRECT
"""Open flags not passed on: the kernel gives every write its offset (the end, for
O_APPEND), and the local pwrite must go exactly there, as its record says (Linux's
pwrite on an O_APPEND descriptor would ignore the offset); O_DIRECT would need aligned
buffers."""

TIMEOUT = 1.0
"""How long the kernel may cache names and attributes (only this process changes them)."""


def _errors(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """OSError -> its errno; NoStandby -> EIO; both as FUSEError for the kernel."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await func(*args, **kwargs)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno or errno.EIO) from None
        except NoStandby:
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _changes(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """An operation that changes something: it passes the replicator's gate (a join's
    catch-up runs between such operations, never during one: :mod:`.join`)."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        fs = args[0]
        assert isinstance(fs, SyncFS)
        async with fs.repl.change():
            return await func(*args, **kwargs)

    return wrapper


def _key(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def open_root(path: str) -> int:
    """The directory's descriptor, to be opened before the mount hides it."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


class SyncFS(pyfuse3.Operations):
    """Pass-through to ``root_fd``; replicates through ``replicator``."""

    enable_writeback_cache = False

    def __init__(self, root_fd: int, replicator: Replicator) -> None:
        super().__init__()
        self.root = root_fd
        info = os.fstat(root_fd)
        self.path = os.fsencode(os.readlink(f"/proc/self/fd/{root_fd}"))
        self._mounts: set[bytes] = set()
        self._mounts_read_at = -math.inf
        self.ns = Namespace(_key(info))
        self.repl = replicator
        self._dirs: dict[int, tuple[int, list[bytes]]] = {}
        self._next_dir = 1

    # -- helpers -------------------------------------------------------------

    def _rel(self, inode: int) -> bytes:
        path = self.ns.path(inode) if self.ns.known(inode) else None
        if path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path or b"."

    def _child(self, parent: int, name: bytes) -> bytes:
        path = self.ns.child(parent, name) if self.ns.known(parent) else None
        if path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path

    def _lstat(self, rel: bytes) -> os.stat_result:
        return os.lstat(rel, dir_fd=self.root)

    def _new_gid(self, rel: bytes, ctx: Any) -> int:
        """The group to give a new entry: -1 (keep the kernel's choice) in a setgid
        directory, whose group the kernel already gave it, as on a plain directory and on
        the standby's copy; else the caller's (the mount process creates as root)."""
        parent = os.path.dirname(rel) or b"."
        return -1 if self._lstat(parent).st_mode & stat.S_ISGID else ctx.gid

    def _attr(self, info: os.stat_result, inode: int) -> Any:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        entry.generation = 0
        entry.entry_timeout = TIMEOUT
        entry.attr_timeout = TIMEOUT
        entry.st_mode = info.st_mode
        entry.st_nlink = info.st_nlink
        entry.st_uid = info.st_uid
        entry.st_gid = info.st_gid
        entry.st_rdev = info.st_rdev
        entry.st_size = info.st_size
        entry.st_blksize = info.st_blksize
        entry.st_blocks = info.st_blocks
        entry.st_atime_ns = info.st_atime_ns
        entry.st_mtime_ns = info.st_mtime_ns
        entry.st_ctime_ns = info.st_ctime_ns
        return entry

    def _mount_inside(self, rel: bytes, info: os.stat_result) -> bool:
        """Whether ``rel`` is a directory with another file system mounted on it (by the
        mount table, re-read at most once a second: st_dev says nothing on overlayfs,
        whose directories and files each report their own)."""
        if not stat.S_ISDIR(info.st_mode):
            return False
        now = time.monotonic()
        if now >= self._mounts_read_at + 1.0:
            self._mounts = points_below(self.path)
            self._mounts_read_at = now
        return rel in self._mounts

    def _entry(self, parent: int, name: bytes, info: os.stat_result) -> Any:
        if self._mount_inside(self._child(parent, name), info):
            raise pyfuse3.FUSEError(errno.EXDEV)  # another file system mounted inside
        inode = self.ns.entry(parent, name, _key(info), stat.S_ISDIR(info.st_mode))
        return self._attr(info, inode)

    async def _send(self, step: Step) -> None:
        await self.repl.submit(step)

    # -- names and attributes ------------------------------------------------

    @_errors
    async def lookup(self, parent_inode: Any, name: bytes, ctx: Any = None) -> Any:
        if name == b".":
            return self._attr(self._lstat(self._rel(parent_inode)), parent_inode)
        if name == b"..":
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(parent_inode, name, self._lstat(self._child(parent_inode, name)))

    async def forget(self, inode_list: Any) -> None:
        for inode, count in inode_list:
            self.ns.forget(inode, count)

    @_errors
    async def getattr(self, inode: Any, ctx: Any = None) -> Any:
        return self._attr(self._lstat(self._rel(inode)), inode)

    @_errors
    @_changes
    async def setattr(self, inode: Any, attr: Any, fields: Any, fh: Any, ctx: Any) -> Any:
        rel = self._rel(inode)
        info = self._lstat(rel)
        link = stat.S_ISLNK(info.st_mode)
        size = mode = uid = gid = None
        times = None
        if fields.update_size:
            if fh is not None:
                os.ftruncate(fh, attr.st_size)
            else:
                fd = os.open(rel, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.root)
                try:
                    os.ftruncate(fd, attr.st_size)
                finally:
                    os.close(fd)
            size = attr.st_size
        if fields.update_mode and not link:
            os.chmod(rel, stat.S_IMODE(attr.st_mode), dir_fd=self.root)
            mode = stat.S_IMODE(attr.st_mode)
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            os.chown(rel, uid, gid, dir_fd=self.root, follow_symlinks=False)
        if fields.update_atime or fields.update_mtime:
            atime = attr.st_atime_ns if fields.update_atime else info.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else info.st_mtime_ns
            os.utime(rel, ns=(atime, mtime), dir_fd=self.root, follow_symlinks=False)
            times = Times(atime, mtime)
        after = self._lstat(rel)
        if mode is not None:
            mode = stat.S_IMODE(after.st_mode)
        if size is not None and times is None:  # the cut changed the times: the same there
            times = Times(after.st_atime_ns, after.st_mtime_ns)
        await self._send(
            self.ns.setattr(inode, mode=mode, uid=uid, gid=gid, size=size, times=times)
        )
        return self._attr(after, inode)

    @_errors
    async def readlink(self, inode: Any, ctx: Any) -> bytes:
        return os.readlink(self._rel(inode), dir_fd=self.root)

    @_errors
    async def statfs(self, ctx: Any) -> Any:
        info = os.statvfs(self.root)
        data = pyfuse3.StatvfsData()
        for name in (
            "f_bsize",
            "f_frsize",
            "f_blocks",
            "f_bfree",
            "f_bavail",
            "f_files",
            "f_ffree",
            "f_favail",
            "f_namemax",
        ):
            setattr(data, name, getattr(info, name))
        return data

    # -- directories ---------------------------------------------------------

    @_errors
    async def opendir(self, inode: Any, ctx: Any) -> Any:
        fd = os.open(
            self._rel(inode), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.root
        )
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        finally:
            os.close(fd)
        handle = self._next_dir
        self._next_dir += 1
        self._dirs[handle] = (inode, names)
        return handle

    @_errors
    async def readdir(self, fh: Any, start_id: int, token: Any) -> None:
        parent, names = self._dirs[fh]
        for index in range(start_id, len(names)):
            name = names[index]
            try:
                info = self._lstat(self._child(parent, name))
            except FileNotFoundError:
                continue
            if self._mount_inside(self._child(parent, name), info):
                continue
            attr = self._entry(parent, name, info)
            if not pyfuse3.readdir_reply(token, name, attr, index + 1):
                self.ns.forget(attr.st_ino, 1)
                break

    async def releasedir(self, fh: Any) -> None:
        self._dirs.pop(fh, None)

    @_errors
    @_changes
    async def fsyncdir(self, fh: Any, datasync: bool) -> None:
        await self._send(self.ns.fsyncdir())

    @_errors
    @_changes
    async def mkdir(self, parent_inode: Any, name: bytes, mode: int, ctx: Any) -> Any:
        rel = self._child(parent_inode, name)
        os.mkdir(rel, stat.S_IMODE(mode), dir_fd=self.root)
        os.chown(rel, ctx.uid, self._new_gid(rel, ctx), dir_fd=self.root, follow_symlinks=False)
        info = self._lstat(rel)
        inode, step = self.ns.mkdir(
            parent_inode, name, _key(info), stat.S_IMODE(info.st_mode), ctx.uid, info.st_gid
        )
        await self._send(step)
        return self._attr(info, inode)

    @_errors
    @_changes
    async def rmdir(self, parent_inode: Any, name: bytes, ctx: Any) -> None:
        os.rmdir(self._child(parent_inode, name), dir_fd=self.root)
        await self._send(self.ns.rmdir(parent_inode, name))

    @_errors
    @_changes
    async def unlink(self, parent_inode: Any, name: bytes, ctx: Any) -> None:
        os.unlink(self._child(parent_inode, name), dir_fd=self.root)
        await self._send(self.ns.unlink(parent_inode, name))

    @_errors
    @_changes
    async def symlink(self, parent_inode: Any, name: bytes, target: bytes, ctx: Any) -> Any:
        rel = self._child(parent_inode, name)
        os.symlink(target, rel, dir_fd=self.root)
        os.chown(rel, ctx.uid, self._new_gid(rel, ctx), dir_fd=self.root, follow_symlinks=False)
        info = self._lstat(rel)
        inode, step = self.ns.symlink(parent_inode, name, _key(info), target, ctx.uid, info.st_gid)
        await self._send(step)
        return self._attr(info, inode)

    @_errors
    @_changes
    async def rename(
        self,
        parent_inode_old: Any,
        name_old: bytes,
        parent_inode_new: Any,
        name_new: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        if flags & pyfuse3.RENAME_NOREPLACE:
            try:
                self._lstat(new)
            except FileNotFoundError:
                pass
            else:
                raise pyfuse3.FUSEError(errno.EEXIST)
        os.rename(old, new, src_dir_fd=self.root, dst_dir_fd=self.root)
        await self._send(self.ns.rename(parent_inode_old, name_old, parent_inode_new, name_new))

    @_errors
    @_changes
    async def link(self, inode: Any, new_parent_inode: Any, new_name: bytes, ctx: Any) -> Any:
        src = self._rel(inode)
        dst = self._child(new_parent_inode, new_name)
        os.link(src, dst, src_dir_fd=self.root, dst_dir_fd=self.root, follow_symlinks=False)
        step = self.ns.link(inode, new_parent_inode, new_name)
        await self._send(step)
        return self._attr(self._lstat(dst), inode)

    @_errors
    async def mknod(self, parent_inode: Any, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EPERM)  # no devices, FIFOs or sockets (see the module)

    # -- files ---------------------------------------------------------------

    @_errors
    @_changes
    async def open(self, inode: Any, flags: int, ctx: Any) -> Any:
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | _KERNEL_DOES)
        fd = os.open(self._rel(inode), flags | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self.root)
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        try:
            step = self.ns.open(inode, fd, writable, truncate=bool(flags & os.O_TRUNC) and writable)
        except BaseException:
            os.close(fd)
            raise
        await self._send(step)
        return pyfuse3.FileInfo(fh=fd)

    @_errors
    @_changes
    async def create(self, parent_inode: Any, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
        rel = self._child(parent_inode, name)
        fd = os.open(
            rel,
            (flags & ~_KERNEL_DOES) | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
            stat.S_IMODE(mode),
            dir_fd=self.root,
        )
        try:
            os.fchown(fd, ctx.uid, self._new_gid(rel, ctx))
            info = os.fstat(fd)
            inode, step = self.ns.create(
                parent_inode, name, _key(info), fd, stat.S_IMODE(info.st_mode), ctx.uid, info.st_gid
            )
        except BaseException:
            os.close(fd)
            raise
        await self._send(step)
        return pyfuse3.FileInfo(fh=fd), self._attr(info, inode)

    @_errors
    async def read(self, fh: Any, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    @_errors
    @_changes
    async def write(self, fh: Any, off: int, buf: bytes) -> int:
        count = os.pwrite(fh, buf, off)
        await self._send(self.ns.write(fh, off, bytes(buf[:count])))
        return count

    def _times(self, fh: int) -> Times:
        info = os.fstat(fh)
        return Times(info.st_atime_ns, info.st_mtime_ns)

    @_errors
    @_changes
    async def flush(self, fh: Any) -> None:
        await self._send(self.ns.flush(fh, self._times(fh)))

    @_errors
    @_changes
    async def fsync(self, fh: Any, datasync: bool) -> None:
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        await self._send(self.ns.fsync(fh, self._times(fh)))

    async def release(self, fh: Any) -> None:
        self.ns.release(fh)
        os.close(fh)


__all__ = ["ROOT", "SyncFS", "open_root"]
