"""The standby's side of the synchronous mode: apply a record stream under one directory.

Run as a forced-command style process (``python -m mosqit_failover.syncfs apply --root
DIR --state STATE_JSON``): the stream (:mod:`.stream`) on stdin, answers on stdout, one
line each:

- ``ready EPOCH`` once the :class:`~.records.Hello` is accepted;
- ``ok SEQ`` for each :class:`~.records.Commit`, written only after every file and
  directory changed since the previous one was fsynced;
- ``refused: WHY`` and exit status 77 (:data:`~..sync.receive.REFUSED_EXIT`) for anything
  it will not do: a stale sender, a malformed stream, a path that leaves the directory, a
  change that cannot be applied (the standby is then out of step: the sender must
  degrade and catch up). The same line, prefixed ``mosqit-sync refused:``, goes to stderr.

Guards, as :mod:`..sync.receive`:

- the epoch: the sender's (its Hello) must be at least this node's persisted epoch and
  this node not ACTIVE, checked at the start and again at every commit (a standby that
  promoted meanwhile acknowledges nothing more from the old active);
- the directory: its own real path (no symlink in it), a directory;
- every path is relative with no ``..`` (:func:`~.records.check_path`) and is walked from
  the directory's fd one component at a time with ``O_NOFOLLOW``: a symlink in the
  stream's own tree (a record may create one) is never followed, so nothing outside the
  directory is ever touched; files are opened ``O_NOFOLLOW``, modes lose setuid and setgid
  (as the rsync receiver's ``--chmod=Fug-s``), and there is no record for devices.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from mosqit_failover.effects.state import StateError, StateFile
from mosqit_failover.sync.commands import REFUSED
from mosqit_failover.sync.receive import REFUSED_EXIT, Refused, check_epoch
from mosqit_failover.syncfs.records import (
    KEEP_ID,
    Chmod,
    Chown,
    Commit,
    Create,
    Hello,
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
from mosqit_failover.syncfs.stream import Decoder, StreamError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_SUID = ~(stat.S_ISUID | stat.S_ISGID) & 0o7777
READ_CHUNK = 1 << 20

EpochCheck = Callable[[int], None]
"""Raises :class:`Refused` if a sender of that epoch may not write (now)."""


class ApplyError(Exception):
    """A record cannot be applied: the standby is out of step with the sender."""


def state_guard(state: StateFile) -> EpochCheck:
    """The epoch guard of :mod:`..sync.receive` over this node's state file."""

    def check(sender: int) -> None:
        try:
            own, role = state.load()
        except StateError as error:
            raise Refused(f"cannot read this node's epoch: {error}") from None
        check_epoch(sender, own, role)

    return check


def check_root(root: str) -> str:
    """``root`` if it is an absolute directory that is its own real path (created if missing)."""
    if not root.startswith("/"):
        raise Refused(f"the synced directory {root!r} must be an absolute path")
    norm = os.path.normpath(root)
    os.makedirs(norm, mode=0o755, exist_ok=True)
    real = os.path.realpath(norm)
    if real != norm:
        raise Refused(
            f"{norm} leads through a symlink (its real path is {real}); a synced directory "
            "must be its own real path"
        )
    if not os.path.isdir(norm):
        raise Refused(f"{norm} is not a directory; move it away")
    return norm


class Applier:
    """Applies records under the directory open as ``root_fd``; fsyncs on :meth:`commit`."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._files: dict[bytes, int] = {}  # written since the last commit: fsync then close
        self._dirs: set[bytes] = set()  # directories whose entries changed ("" is the root)

    def close(self) -> None:
        for fd in self._files.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._files.clear()

    # -- walking -------------------------------------------------------------

    def _dir(self, rel: bytes) -> int:
        """An fd of directory ``rel`` ("" the root), reached without following a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for part in rel.split(b"/") if rel else ():
                try:
                    step = os.open(part, _DIR, dir_fd=fd)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise ApplyError(
                            f"{rel!r} leads through a symlink or a file ({part!r}); "
                            "refusing to follow it"
                        ) from None
                    raise
                os.close(fd)
                fd = step
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, path: bytes) -> tuple[int, bytes, bytes]:
        """(fd of the parent directory, last name, the parent's path)."""
        parent, _, name = path.rpartition(b"/")
        return self._dir(parent), name, parent

    def _file(self, path: bytes) -> int:
        fd = self._files.get(path)
        if fd is None:
            pfd, name, _ = self._parent(path)
            try:
                fd = os.open(name, _FILE, dir_fd=pfd)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise ApplyError(f"{path!r} is a symlink here, not a file") from None
                raise
            finally:
                os.close(pfd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ApplyError(f"{path!r} is not a regular file here")
            self._files[path] = fd
        return fd

    def _forget(self, path: bytes) -> None:
        """Cached files at or under ``path`` are gone: close them (nothing to keep)."""
        for key in [k for k in self._files if k == path or k.startswith(path + b"/")]:
            with contextlib.suppress(OSError):
                os.close(self._files.pop(key))

    def _moved(self, src: bytes, dst: bytes) -> None:
        self._forget(dst)
        for key in [k for k in self._files if k == src or k.startswith(src + b"/")]:
            self._files[dst + key[len(src) :]] = self._files.pop(key)

    def _clear(self, pfd: int, name: bytes) -> None:
        """Remove what is at ``name`` unless it is a directory (a create replaces it)."""
        try:
            info = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise ApplyError(f"{name!r} is a directory here; the sender has a file there")
        os.unlink(name, dir_fd=pfd)

    # -- records -------------------------------------------------------------

    def apply(self, record: Record) -> None:
        match record:
            case Write(path, offset, data):
                _write_all(self._file(path), data, offset)
            case SetSize(path, size):
                os.ftruncate(self._file(path), size)
            case Create(path, mode, uid, gid):
                self._forget(path)
                pfd, name, parent = self._parent(path)
                try:
                    self._clear(pfd, name)
                    fd = os.open(name, _FILE | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=pfd)
                finally:
                    os.close(pfd)
                self._files[path] = fd
                os.fchown(fd, _owner(uid), _owner(gid))
                os.fchmod(fd, mode & _NO_SUID)
                self._dirs.add(parent)
            case Mkdir(path, mode, uid, gid):
                pfd, name, parent = self._parent(path)
                try:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=pfd)
                    dfd = os.open(name, _DIR, dir_fd=pfd)
                finally:
                    os.close(pfd)
                try:
                    os.fchown(dfd, _owner(uid), _owner(gid))
                    os.fchmod(dfd, mode & 0o7777)
                finally:
                    os.close(dfd)
                self._dirs.update((parent, path))
            case Rmdir(path):
                pfd, name, parent = self._parent(path)
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(name, dir_fd=pfd)
                finally:
                    os.close(pfd)
                self._dirs.discard(path)
                self._dirs.add(parent)
            case Unlink(path):
                self._forget(path)
                pfd, name, parent = self._parent(path)
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=pfd)
                finally:
                    os.close(pfd)
                self._dirs.add(parent)
            case Rename(src, dst):
                self._rename(src, dst)
            case Symlink(path, target, uid, gid):
                self._forget(path)
                pfd, name, parent = self._parent(path)
                try:
                    self._clear(pfd, name)
                    os.symlink(target, name, dir_fd=pfd)
                    os.chown(name, _owner(uid), _owner(gid), dir_fd=pfd, follow_symlinks=False)
                finally:
                    os.close(pfd)
                self._dirs.add(parent)
            case Link(src, dst):
                self._forget(dst)
                sfd, sname, _ = self._parent(src)
                try:
                    dfd, dname, parent = self._parent(dst)
                    try:
                        self._clear(dfd, dname)
                        os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                    finally:
                        os.close(dfd)
                finally:
                    os.close(sfd)
                self._dirs.add(parent)
            case Chmod(path, mode):
                self._chmod(path, mode)
            case Chown(path, uid, gid):
                pfd, name, _ = self._parent(path)
                try:
                    os.chown(name, _owner(uid), _owner(gid), dir_fd=pfd, follow_symlinks=False)
                finally:
                    os.close(pfd)
            case Utimes(path, atime_ns, mtime_ns):
                pfd, name, _ = self._parent(path)
                try:
                    os.utime(name, ns=(atime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
                finally:
                    os.close(pfd)
            case Hello() | Commit():
                raise ApplyError(f"{type(record).__name__} is not a change (a stream bug)")

    def _rename(self, src: bytes, dst: bytes) -> None:
        sfd, sname, sparent = self._parent(src)
        try:
            dfd, dname, dparent = self._parent(dst)
            try:
                os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        self._moved(src, dst)
        self._dirs.update((sparent, dparent))
        moved = {d for d in self._dirs if d == src or d.startswith(src + b"/")}
        self._dirs -= moved
        self._dirs.update(dst + d[len(src) :] for d in moved)

    def _chmod(self, path: bytes, mode: int) -> None:
        pfd, name, _ = self._parent(path)
        try:
            info = os.lstat(name, dir_fd=pfd)
            if stat.S_ISLNK(info.st_mode):
                return  # a symlink has no mode of its own on Linux
            flags = (_DIR if stat.S_ISDIR(info.st_mode) else os.O_RDONLY | os.O_NOFOLLOW) | (
                os.O_NONBLOCK | os.O_CLOEXEC
            )
            fd = os.open(name, flags, dir_fd=pfd)
        finally:
            os.close(pfd)
        try:
            os.fchmod(fd, mode & (0o7777 if stat.S_ISDIR(info.st_mode) else _NO_SUID))
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Make every change since the last commit durable: files, then directories."""
        files, self._files = self._files, {}
        try:
            for fd in files.values():
                os.fsync(fd)
        finally:
            for fd in files.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
        dirs, self._dirs = self._dirs, set()
        for rel in sorted(dirs, key=len, reverse=True):
            try:
                fd = self._dir(rel)
            except (FileNotFoundError, ApplyError):
                continue  # removed or replaced since: its parent's fsync covers it
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset``, or OSError (a short write is ENOSPC, never silent)."""
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        if count <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[count:]
        offset += count


def _owner(value: int) -> int:
    return -1 if value == KEEP_ID else value


def serve(root_fd: int, guard: EpochCheck, stdin: BinaryIO, stdout: TextIO) -> int:
    """Apply the stream on ``stdin``; 0 at its clean end. Raises Refused for the rest.

    Group commit: the commits that arrived in one read are made durable by one round of
    fsyncs, then each is acknowledged (concurrent closers on the active share it)."""
    decoder = Decoder()
    applier = Applier(root_fd)
    epoch: int | None = None
    try:
        while True:
            chunk = stdin.read1(READ_CHUNK) if hasattr(stdin, "read1") else stdin.read(READ_CHUNK)
            if not chunk:
                if decoder.pending:
                    raise Refused(f"the stream was cut inside a record ({decoder.pending} bytes)")
                return 0
            try:
                records = decoder.feed(chunk)
            except StreamError as error:
                raise Refused(f"malformed stream: {error}") from None
            if epoch is None and records:
                epoch = _hello(records.pop(0), guard, stdout)
            acks: list[int] = []
            try:
                for record in records:
                    if isinstance(record, Hello):
                        raise Refused("a second hello in one stream")
                    if isinstance(record, Commit):
                        acks.append(record.seq)
                        continue
                    try:
                        applier.apply(record)
                    except (ApplyError, OSError) as error:
                        raise Refused(
                            f"cannot apply {type(record).__name__} "
                            f"{_describe(record)}: {_why(error)}; this standby is out of step "
                            "and must catch up"
                        ) from None
            finally:
                if acks and epoch is not None:  # what was acknowledged before a refusal holds
                    applier.commit()
                    guard(epoch)
                    stdout.write("".join(f"ok {seq}\n" for seq in acks))
                    stdout.flush()
    finally:
        applier.close()


def _hello(record: Record, guard: EpochCheck, stdout: TextIO) -> int:
    if not isinstance(record, Hello):
        raise Refused(
            f"the stream must start with the sender's epoch, not a {type(record).__name__} record"
        )
    guard(record.epoch)
    stdout.write(f"ready {record.epoch}\n")
    stdout.flush()
    return record.epoch


def _describe(record: Record) -> str:
    path = getattr(record, "path", None) or getattr(record, "src", b"")
    return os.fsdecode(path)[:200] if isinstance(path, bytes) else ""


def _why(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosqit_failover.syncfs apply")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="the synced directory on this standby")
    parser.add_argument(
        "--state", required=True, help="this node's state file (state.json: epoch and role)"
    )


def run(
    args: argparse.Namespace, stdin: BinaryIO | None = None, stdout: TextIO | None = None
) -> int:
    """Serve the stream; never a traceback: a refusal is one line and exit 77."""
    out = stdout or sys.stdout
    try:
        try:
            root = check_root(args.root)
            root_fd = os.open(root, _DIR)
            try:
                return serve(
                    root_fd,
                    state_guard(StateFile(Path(args.state))),
                    stdin or sys.stdin.buffer,
                    out,
                )
            finally:
                os.close(root_fd)
        except (Refused, OSError, ValueError) as error:
            reason = _why(error) if isinstance(error, OSError) else str(error)
        except Exception as error:  # a forced command answers in one line, whatever happens
            reason = f"internal error ({type(error).__name__}: {error})"
        reason = reason.replace("\n", " ")
        with contextlib.suppress(Exception):
            out.write(f"refused: {reason}\n")
            out.flush()
        print(f"{REFUSED} {reason}", file=sys.stderr, flush=True)
    except Exception:  # stdout and stderr gone: the exit status still says it
        pass
    return REFUSED_EXIT
