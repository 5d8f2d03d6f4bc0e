"""The byte stream of replication records: versioned, length-prefixed, bounded. Pure.

A stream starts with :data:`MAGIC` and one version byte (:data:`VERSION`), then frames:

    u32 length (big-endian, of what follows)   u8 type   payload

Integers are big-endian (u32, u64; times are signed i64). A path or a symlink's text is
u16 length + bytes; written data is u32 length + bytes. Every frame is at most
:data:`MAX_FRAME` bytes, written data at most :data:`MAX_DATA`, paths at most
:data:`~.records.PATH_MAX` and checked by :func:`~.records.check_path` (relative, no
``..``). Anything else is a :class:`StreamError` naming what is wrong; the decoder
never allocates more than one frame's bound for a hostile length.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from mosqit_failover.syncfs.records import (
    PATH_MAX,
    BadPath,
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
    check_path,
)

MAGIC = b"MQSF"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])

MAX_DATA = 1 << 20
"""Largest data of one :class:`~.records.Write` (FUSE sends at most 1 MiB per write)."""

MAX_FRAME = MAX_DATA + 2 * PATH_MAX + 64
"""Largest frame (length field excluded)."""

_TYPES: dict[type, int] = {
    Hello: 1,
    Write: 2,
    SetSize: 3,
    Create: 4,
    Mkdir: 5,
    Rmdir: 6,
    Unlink: 7,
    Rename: 8,
    Symlink: 9,
    Link: 10,
    Chmod: 11,
    Chown: 12,
    Utimes: 13,
    Commit: 14,
}

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


class StreamError(ValueError):
    """The stream is malformed; the message says what and where."""


def _path(value: bytes) -> bytes:
    check_path(value)
    return _U16.pack(len(value)) + value


def _text(value: bytes) -> bytes:
    if not value or len(value) > PATH_MAX or b"\0" in value:
        raise StreamError(f"a symlink text of {len(value)} bytes (1 to {PATH_MAX}, no NUL)")
    return _U16.pack(len(value)) + value


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise StreamError(f"{value} does not fit 32 bits")
    return _U32.pack(value)


def _u64(value: int) -> bytes:
    if not 0 <= value <= U64_MAX:
        raise StreamError(f"{value} does not fit 64 bits")
    return _U64.pack(value)


def _i64(value: int) -> bytes:
    if not I64_MIN <= value <= I64_MAX:
        raise StreamError(f"{value} does not fit a signed 64-bit time")
    return _I64.pack(value)


def _payload(record: Record) -> bytes:
    match record:
        case Hello(epoch):
            return _u64(epoch)
        case Write(path, offset, data):
            if len(data) > MAX_DATA:
                raise StreamError(f"a write of {len(data)} bytes (at most {MAX_DATA})")
            return _path(path) + _u64(offset) + _U32.pack(len(data)) + data
        case SetSize(path, size):
            return _path(path) + _u64(size)
        case Create(path, mode, uid, gid) | Mkdir(path, mode, uid, gid):
            return _path(path) + _u32(mode) + _u32(uid) + _u32(gid)
        case Rmdir(path) | Unlink(path):
            return _path(path)
        case Rename(src, dst) | Link(src, dst):
            return _path(src) + _path(dst)
        case Symlink(path, target, uid, gid):
            return _path(path) + _text(target) + _u32(uid) + _u32(gid)
        case Chmod(path, mode):
            return _path(path) + _u32(mode)
        case Chown(path, uid, gid):
            return _path(path) + _u32(uid) + _u32(gid)
        case Utimes(path, atime_ns, mtime_ns):
            return _path(path) + _i64(atime_ns) + _i64(mtime_ns)
        case Commit(seq):
            return _u64(seq)
    raise StreamError(f"not a record: {record!r}")


def encode(record: Record) -> bytes:
    """One frame. Raises :class:`StreamError` (or BadPath) for what the decoder would refuse."""
    body = bytes([_TYPES[type(record)]]) + _payload(record)
    return _U32.pack(len(body)) + body


class _Reader:
    def __init__(self, body: bytes, kind: str) -> None:
        self.body = body
        self.at = 0
        self.kind = kind

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.body):
            raise StreamError(f"a {self.kind} record is truncated")
        chunk = self.body[self.at : self.at + count]
        self.at += count
        return chunk

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self.take(8))[0])

    def path(self) -> bytes:
        value = self.take(self.u16())
        try:
            return check_path(value)
        except BadPath as error:
            raise StreamError(f"a {self.kind} record names {error}") from None

    def text(self) -> bytes:
        value = self.take(self.u16())
        if not value or b"\0" in value:
            raise StreamError(f"a {self.kind} record has an empty symlink text or one with NUL")
        return value

    def data(self) -> bytes:
        size = self.u32()
        if size > MAX_DATA:
            raise StreamError(f"a write of {size} bytes (at most {MAX_DATA})")
        return self.take(size)

    def end(self) -> None:
        if self.at != len(self.body):
            raise StreamError(f"a {self.kind} record has {len(self.body) - self.at} extra bytes")


_DECODERS: dict[int, tuple[str, Callable[[_Reader], Record]]] = {
    1: ("hello", lambda r: Hello(r.u64())),
    2: ("write", lambda r: Write(r.path(), r.u64(), r.data())),
    3: ("set-size", lambda r: SetSize(r.path(), r.u64())),
    4: ("create", lambda r: Create(r.path(), r.u32(), r.u32(), r.u32())),
    5: ("mkdir", lambda r: Mkdir(r.path(), r.u32(), r.u32(), r.u32())),
    6: ("rmdir", lambda r: Rmdir(r.path())),
    7: ("unlink", lambda r: Unlink(r.path())),
    8: ("rename", lambda r: Rename(r.path(), r.path())),
    9: ("symlink", lambda r: Symlink(r.path(), r.text(), r.u32(), r.u32())),
    10: ("link", lambda r: Link(r.path(), r.path())),
    11: ("chmod", lambda r: Chmod(r.path(), r.u32())),
    12: ("chown", lambda r: Chown(r.path(), r.u32(), r.u32())),
    13: ("utimes", lambda r: Utimes(r.path(), r.i64(), r.i64())),
    14: ("commit", lambda r: Commit(r.u64())),
}


def decode_body(body: bytes) -> Record:
    """The record of one frame's body (type byte and payload)."""
    if not body:
        raise StreamError("an empty frame")
    entry = _DECODERS.get(body[0])
    if entry is None:
        raise StreamError(f"unknown record type {body[0]} (this receiver speaks version {VERSION})")
    kind, build = entry
    reader = _Reader(body[1:], kind)
    record = build(reader)
    reader.end()
    return record


def check_header(header: bytes) -> None:
    if len(header) < len(HEADER):
        raise StreamError("the stream ended before its header")
    if header[: len(MAGIC)] != MAGIC:
        raise StreamError(
            f"not a mosqit sync stream (starts with {header[:8]!r}, expected {MAGIC!r})"
        )
    if header[len(MAGIC)] != VERSION:
        raise StreamError(
            f"stream version {header[len(MAGIC)]}, this receiver speaks {VERSION}: "
            "install the same mosqit-failover version on every node"
        )


class Decoder:
    """Records from bytes fed in any chunks (the header first)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header = False

    def feed(self, chunk: bytes) -> list[Record]:
        self._buffer += chunk
        records: list[Record] = []
        if not self._header:
            if len(self._buffer) < len(HEADER):
                if not HEADER.startswith(bytes(self._buffer[: len(HEADER)])):
                    check_header(bytes(self._buffer) + b"\0" * len(HEADER))
                return records
            check_header(bytes(self._buffer[: len(HEADER)]))
            del self._buffer[: len(HEADER)]
            self._header = True
        while len(self._buffer) >= 4:
            size = _U32.unpack_from(self._buffer)[0]
            if size > MAX_FRAME:
                raise StreamError(f"a frame of {size} bytes (at most {MAX_FRAME})")
            if len(self._buffer) < 4 + size:
                break
            body = bytes(self._buffer[4 : 4 + size])
            del self._buffer[: 4 + size]
            records.append(decode_body(body))
        return records

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (a stream that ends here was cut)."""
        return len(self._buffer)
