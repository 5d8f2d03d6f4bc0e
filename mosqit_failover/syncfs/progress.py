"""How far a standby's applier got: the last commit it made durable, per synchronous
directory, where the standby's agent reads it (docs/sync-mode.md, "Freshness").

One small file per directory, ``STATE_DIR/sync-applied/KEY`` (KEY: a digest of the
directory's real path), holding one record: magic, the stream's epoch (u64), the commit
(u64) and a CRC-32 of those, 24 bytes, rewritten in place after every group commit,
after its fsyncs and before its acknowledgement. So when the active's mount returns a
sync point, every standby it counted already shows that commit or a later one.

It is never fsynced, on purpose: it costs one pwrite per group commit. After a crash of
the standby the file may show less than was applied, never more (the data's fsyncs come
first): the standby then ranks lower than it could, and it missed the writes made while
it was down anyway. A reader can catch a record half rewritten: the
CRC tells, and :class:`AppliedReader` keeps the record it read before, as for no file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import sys
import zlib
from pathlib import Path

from mosqit_failover.syncfs.stream import U64_MAX

DIRECTORY = "sync-applied"
MAGIC = b"MQAP"
_BODY = struct.Struct(">4sQQ")
_CRC = struct.Struct(">I")
SIZE = _BODY.size + _CRC.size


def applied_path(state_dir: Path, root: str) -> Path:
    """Where the applier of ``root`` records its progress on this node."""
    key = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()[:32]
    return state_dir / DIRECTORY / key


def encode(epoch: int, commit: int) -> bytes:
    if not (0 <= epoch <= U64_MAX and 0 <= commit <= U64_MAX):
        raise ValueError(f"epoch {epoch} and commit {commit} must be within 0..2**64-1")
    body = _BODY.pack(MAGIC, epoch, commit)
    return body + _CRC.pack(zlib.crc32(body))


def decode(data: bytes) -> tuple[int, int] | None:
    """(epoch, commit) of a whole record; None for anything else (short, torn, foreign)."""
    if len(data) != SIZE:
        return None
    body, (crc,) = data[: _BODY.size], _CRC.unpack(data[_BODY.size :])
    if zlib.crc32(body) != crc:
        return None
    magic, epoch, commit = _BODY.unpack(body)
    return (epoch, commit) if magic == MAGIC else None


class AppliedRecorder:
    """The applier's side: :meth:`record` after each durable group commit.

    Never raises: a state directory that cannot be written (full, read-only) leaves the
    older record, and this standby claims less than it applied until a later commit's
    record succeeds (each commit tries again). Said on stderr when it starts failing and
    when it works again (the forced command's stderr reaches the active's mount log)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._failing = False

    def record(self, epoch: int, commit: int) -> None:
        try:
            if self._fd is None:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
                )
            os.pwrite(self._fd, encode(epoch, commit), 0)
        except (OSError, ValueError) as error:
            if not self._failing:
                self._failing = True
                self._say(
                    f"cannot record the commit applied in {self.path}: {error}; this "
                    "standby ranks as if it had applied less until a record succeeds"
                )
            return
        if self._failing:
            self._failing = False
            self._say(f"the commit applied is recorded again in {self.path} (commit {commit})")

    @staticmethod
    def _say(text: str) -> None:
        print(f"mosqit-sync: {text}", file=sys.stderr, flush=True)

    @property
    def last(self) -> tuple[int, int] | None:
        """The record in the file now (None: none, or unreadable)."""
        try:
            return decode(self.path.read_bytes()[: SIZE + 1])
        except OSError:
            return None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class AppliedReader:
    """The standby agent's side: the last record of each synchronous directory's applier.

    :meth:`read` costs one pread per directory (each file kept open once it exists: the
    applier rewrites it in place). A directory whose file is missing or being rewritten
    keeps the record read before, if any."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._fds: dict[Path, int] = {}
        self._last: dict[Path, tuple[int, int]] = {}

    def read(self) -> tuple[tuple[int, int], ...]:
        """(epoch, commit) per directory with a record, in the order of ``paths``."""
        for path in self.paths:
            record = self._read(path)
            if record is not None:
                self._last[path] = record
        return tuple(self._last[p] for p in self.paths if p in self._last)

    def _read(self, path: Path) -> tuple[int, int] | None:
        fd = self._fds.get(path)
        try:
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            return decode(os.pread(fd, SIZE + 1, 0))
        except OSError:
            return None

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
