"""The standby's side of the synchronous mode: apply a record stream under one directory.

Run as a forced-command style process (``python -m mosqit_failover.syncfs apply --root
DIR --state STATE_JSON``): the stream (:mod:`.stream`) on stdin, answers on stdout, one
line each:

- ``ready EPOCH`` once the :class:`~.records.Hello` is accepted;
- ``ok SEQ`` for each :class:`~.records.Commit`, written only after every file and
  directory changed since the previous one was fsynced, and the last SEQ recorded for the
  standby's agent (:mod:`.progress`: the election ranks standbys by it); each SEQ must be
  above the one before;
- ``refused: WHY`` and exit status 77 (:data:`~..sync.receive.REFUSED_EXIT`) for anything
  it will not do: a stale sender, a malformed stream, a path that leaves the directory, a
  change that cannot be applied (the standby is then out of step: the sender must
  degrade and catch up). The same line, prefixed ``mosqit-sync refused:``, goes to stderr.

Guards, as :mod:`..sync.receive`:

- the epoch: the sender's (its Hello) must be at least this node's persisted epoch and
  data epoch and the highest sender epoch admitted here (:mod:`..sync.admitted`), and
  this node not ACTIVE, checked at the start, before applying each chunk of records
  read, every :data:`CHECK_EVERY` within a chunk, and again before every
  acknowledgement (:class:`~..sync.receive.SenderCheck`: a standby that promoted
  meanwhile, or admitted a newer sender, takes nothing more from the old active); a
  chunk holds the writing lock of :mod:`..sync.admitted`, so a newer sender starts only
  once it is done;
- the catch-up (:mod:`..sync.catchup`): a chunk is applied under a shared lock that the
  rsync receiver takes exclusively to begin a catch-up; once one began after the stream's
  start, the stream is refused (its records are older than the catch-up's data);
- the sender: a chunk read once the sender closed its end of the stream (it gave up and
  had its ssh killed; a poll of stdin says so while data is still in the pipe) is not
  applied: the sender no longer waits for its acknowledgement and may have caught this
  standby up since. The applier also dies with its parent (sshd's session, gone with the
  connection, when the login shell execs the forced command as bash does), even while
  stopped;
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
import fcntl
import io
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from mosqit_failover.effects.state import StateFile
from mosqit_failover.libc import libc
from mosqit_failover.sync import admitted
from mosqit_failover.sync.catchup import CatchUpError, Generation
from mosqit_failover.sync.commands import REFUSED
from mosqit_failover.sync.receive import REFUSED_EXIT, Refused, SenderCheck
from mosqit_failover.syncfs.buffers import keep_freed_buffers, widen_pipe
from mosqit_failover.syncfs.progress import AppliedRecorder, applied_path
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
from mosqit_failover.syncfs.stream import READ_CHUNK, Decoder, StreamError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_SUID = ~(stat.S_ISUID | stat.S_ISGID) & 0o7777

PR_SET_PDEATHSIG = 1
_RDHUP = getattr(select, "POLLRDHUP", 0x2000)  # a socket's peer shut its writing down
_HANGUP = select.POLLHUP | _RDHUP
CHECK_EVERY = 0.01
"""Seconds between two checks of the sender within one chunk."""


class ApplyError(Exception):
    """A record cannot be applied: the standby is out of step with the sender."""


class Guard:
    """Whether the stream's sender may still write into ``root`` (the module doc's guards).

    :meth:`admit` at the Hello reads the state file and the catch-up generation;
    :meth:`enter_chunk` is cheap (a stat, a few preads and two flocks while nothing
    changed) and holds the catch-up lock and the writing lock of :mod:`..sync.admitted`
    until :meth:`leave_chunk`: no catch-up begins, and no newer sender starts writing,
    while a chunk is applied; :meth:`during_chunk` checks again every
    :data:`CHECK_EVERY` seconds within a long chunk; :meth:`acknowledge` checks again
    before an acknowledgement. Each raises Refused with the reason."""

    def __init__(self, state: StateFile, root: str, command_epoch: int | None = None) -> None:
        self.state = state
        self.root = root
        self.command_epoch = command_epoch
        self.epoch: int | None = None
        self._still: SenderCheck | None = None
        self._generation: Generation | None = None
        self._writing = -1
        self._checked = 0.0

    def admit(self, sender: int) -> None:
        if self.command_epoch is not None and sender != self.command_epoch:
            raise Refused(f"the stream's epoch {sender} is not the command's {self.command_epoch}")
        still = SenderCheck(sender, self.state)
        still()
        state_dir = self.state.path.parent
        try:
            self._generation = Generation(state_dir, self.root)
            self._writing = os.open(
                state_dir / admitted.LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as error:
            raise Refused(
                f"cannot open {error.filename or 'the catch-up generation'} for {self.root}: "
                f"{error.strerror or error}"
            ) from None
        self.epoch, self._still = sender, still

    def enter_chunk(self) -> None:
        """Before applying a chunk: refused if the sender may not write now; else no
        catch-up begins, and no newer sender writes, until :meth:`leave_chunk`."""
        assert self._still is not None and self._generation is not None
        # the lock first: a newer sender admitted after the check below waits for this
        # chunk (and the next one is refused), one admitted before is seen by it
        fcntl.flock(self._writing, fcntl.LOCK_SH)
        try:
            self._still()
            self._generation.hold()
        except CatchUpError as error:
            fcntl.flock(self._writing, fcntl.LOCK_UN)
            raise Refused(str(error)) from None
        except BaseException:
            fcntl.flock(self._writing, fcntl.LOCK_UN)
            raise
        self._checked = time.monotonic()

    def during_chunk(self) -> None:
        """Within a chunk, before a record: refused once the sender may no longer write
        (checked at most every :data:`CHECK_EVERY` seconds: a chunk of slow records,
        deep paths, takes seconds)."""
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY:
            assert self._still is not None
            self._still()
            self._checked = now

    def leave_chunk(self) -> None:
        assert self._generation is not None
        self._generation.release()
        fcntl.flock(self._writing, fcntl.LOCK_UN)

    def acknowledge(self) -> None:
        assert self._still is not None
        self._still()

    def close(self) -> None:
        if self._generation is not None:
            self._generation.close()
        if self._writing >= 0:
            os.close(self._writing)
            self._writing = -1


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
        """Make every change since the last commit durable: files, then directories.

        Refused, naming the file or directory, when an fsync fails (a disk that filled
        while its data was written out, an I/O error): nothing is acknowledged then."""
        files, self._files = self._files, {}
        try:
            for path, fd in files.items():
                _durable(fd, path)
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
                _durable(fd, rel or b".")
            finally:
                os.close(fd)


def _durable(fd: int, path: bytes) -> None:
    try:
        os.fsync(fd)
    except OSError as error:
        raise Refused(
            f"cannot make {os.fsdecode(path)[:200]} durable: {_why(error)}; this standby "
            "is out of step and must catch up"
        ) from None


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


class _Input:
    """The stream's bytes, read in chunks as they come; :attr:`gone` once the sender
    closed its end (the end of the stream, or a hang-up seen with the chunk just read:
    a pipe says so while it still holds data). An input without a descriptor (a test's
    bytes) is gone at its end only."""

    def __init__(self, stdin: BinaryIO) -> None:
        self._stdin = stdin
        self.gone = False
        try:
            self._fd: int | None = stdin.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None
        self._poll = select.poll()
        if self._fd is not None:
            widen_pipe(self._fd)
            self._poll.register(self._fd, select.POLLIN | _RDHUP)

    def read(self, decoder: Decoder) -> list[Record] | None:
        """The records the next chunk completes; None at the end of the stream. From a
        descriptor, the chunk is read straight into the decoder's buffer."""
        if self._fd is None:
            stdin = self._stdin
            chunk = stdin.read1(READ_CHUNK) if hasattr(stdin, "read1") else stdin.read(READ_CHUNK)
            self.gone = not chunk
            return decoder.feed(chunk) if chunk else None
        count = os.readv(self._fd, [decoder.space()])
        if count and not self.gone:
            self.gone = any(events & _HANGUP for _, events in self._poll.poll(0))
        self.gone = self.gone or not count
        return decoder.filled(count) if count else None


def serve(root_fd: int, guard: Guard, stdin: BinaryIO, stdout: TextIO) -> int:
    """Apply the stream on ``stdin``; 0 at its clean end. Raises Refused for the rest.

    Group commit: the commits that arrived in one read are made durable by one round of
    fsyncs, the last one recorded (:mod:`.progress`), then each is acknowledged
    (concurrent closers on the active share it)."""
    keep_freed_buffers()  # nowhere to say it fails: only the speed of large writes suffers
    decoder = Decoder()
    applier = Applier(root_fd)
    source = _Input(stdin)
    recorder = AppliedRecorder(applied_path(guard.state.path.parent, guard.root))
    last = 0
    try:
        while True:
            try:
                records = source.read(decoder)
            except StreamError as error:
                raise Refused(f"malformed stream: {error}") from None
            if records is None:
                break
            if guard.epoch is None and records:
                _hello(records.pop(0), guard, stdout)
                # a stream of the epoch recorded here goes on above its count: nobody
                # can lower (or, once, raise past every later commit) a standby's rank
                previous = recorder.last
                if previous is not None and previous[0] == guard.epoch:
                    last = previous[1]
            changes = sum(not isinstance(r, Commit) for r in records)
            if changes and source.gone:
                raise Refused(
                    f"the sender ended the stream with {changes} record(s) not yet "
                    "acknowledged: none is applied (a sender that gave up on this standby "
                    "may have caught it up since)"
                )
            acks: list[int] = []
            if changes:
                guard.enter_chunk()
            try:
                _apply_all(applier, records, acks, last, guard)
            finally:
                if changes:
                    guard.leave_chunk()
                if acks:  # what was acknowledged before a refusal holds
                    applier.commit()
                    guard.acknowledge()
                    last = acks[-1]
                    assert guard.epoch is not None
                    recorder.record(guard.epoch, last)
                    stdout.write("".join(f"ok {seq}\n" for seq in acks))
                    stdout.flush()
        if decoder.pending:
            raise Refused(f"the stream was cut inside a record ({decoder.pending} bytes)")
        return 0
    finally:
        recorder.close()
        applier.close()
        guard.close()


def _apply_all(
    applier: Applier, records: list[Record], acks: list[int], last: int, guard: Guard
) -> None:
    """Apply ``records`` in order; each commit's sequence goes to ``acks``, each above
    the one before (``last``: the stream's last one before these)."""
    for record in records:
        guard.during_chunk()
        if isinstance(record, Hello):
            raise Refused("a second hello in one stream")
        if isinstance(record, Commit):
            before = acks[-1] if acks else last
            if record.seq <= before:
                raise Refused(f"commit {record.seq} after commit {before}: not in order")
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


def _hello(record: Record, guard: Guard, stdout: TextIO) -> None:
    if not isinstance(record, Hello):
        raise Refused(
            f"the stream must start with the sender's epoch, not a {type(record).__name__} record"
        )
    guard.admit(record.epoch)
    stdout.write(f"ready {record.epoch}\n")
    stdout.flush()


def die_with_parent() -> None:
    """SIGKILL when the parent (sshd's session, or the mount) exits, even while stopped:
    an applier whose sender is gone must not wake up later and apply what is in its pipe."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it exited before the prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


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
            if stdin is None:  # the real process: its parent is its sender's end
                die_with_parent()
            root_fd = os.open(root, _DIR)
            try:
                return serve(
                    root_fd,
                    Guard(StateFile(Path(args.state)), root),
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
