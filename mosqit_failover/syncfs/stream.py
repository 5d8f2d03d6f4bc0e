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
from collections.abc import Callable, Sequence

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


def _payload(record: Record) -> tuple[bytes, bytes]:
    """The record's fields, and the data that ends a Write's payload (b"" for the rest)."""
    match record:
        case Hello(epoch):
            return _u64(epoch), b""
        case Write(path, offset, data):
            if len(data) > MAX_DATA:
                raise StreamError(f"a write of {len(data)} bytes (at most {MAX_DATA})")
            return _path(path) + _u64(offset) + _U32.pack(len(data)), data
        case SetSize(path, size):
            return _path(path) + _u64(size), b""
        case Create(path, mode, uid, gid) | Mkdir(path, mode, uid, gid):
            return _path(path) + _u32(mode) + _u32(uid) + _u32(gid), b""
        case Rmdir(path) | Unlink(path):
            return _path(path), b""
        case Rename(src, dst) | Link(src, dst):
            return _path(src) + _path(dst), b""
        case Symlink(path, target, uid, gid):
            return _path(path) + _text(target) + _u32(uid) + _u32(gid), b""
        case Chmod(path, mode):
            return _path(path) + _u32(mode), b""
        case Chown(path, uid, gid):
            return _path(path) + _u32(uid) + _u32(gid), b""
        case Utimes(path, atime_ns, mtime_ns):
            return _path(path) + _i64(atime_ns) + _i64(mtime_ns), b""
        case Commit(seq):
            return _u64(seq), b""
    raise StreamError(f"not a record: {record!r}")


def encode_parts(record: Record) -> tuple[bytes, bytes]:
    """One frame as two pieces to send one after the other: its head, and a Write's data
    as it is (never copied: a 1 MiB write is not concatenated again), else b"".
    Raises :class:`StreamError` (or BadPath) for what the decoder would refuse."""
    fields, data = _payload(record)
    head = _U32.pack(1 + len(fields) + len(data)) + bytes([_TYPES[type(record)]]) + fields
    return head, data


def encode(record: Record) -> bytes:
    """One frame (:func:`encode_parts` joined)."""
    return b"".join(encode_parts(record))


SMALL = 64 << 10
"""Pieces shorter than this are joined before they are sent (one write, not several)."""


def encode_all(records: Sequence[Record]) -> list[bytes]:
    """The frames of ``records`` in order, as few pieces as they can be without copying
    data of :data:`SMALL` bytes or more."""
    pieces: list[bytes] = []
    small: list[bytes] = []
    for record in records:
        for piece in encode_parts(record):
            if len(piece) < SMALL:
                small.append(piece)
                continue
            if small:
                pieces.append(b"".join(small))
                small = []
            pieces.append(piece)
    if small:
        pieces.append(b"".join(small))
    return pieces


class _Reader:
    """The fields of one frame's payload, read in place (a Write's data copied once)."""

    def __init__(self, body: memoryview, kind: str) -> None:
        self.body = body
        self.at = 0
        self.kind = kind

    def _skip(self, count: int) -> int:
        """Where ``count`` bytes start, consumed; StreamError if the record is shorter."""
        at = self.at
        if at + count > len(self.body):
            raise StreamError(f"a {self.kind} record is truncated")
        self.at = at + count
        return at

    def take(self, count: int) -> bytes:
        at = self._skip(count)
        return bytes(self.body[at : at + count])

    def u16(self) -> int:
        return int(_U16.unpack_from(self.body, self._skip(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack_from(self.body, self._skip(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack_from(self.body, self._skip(8))[0])

    def i64(self) -> int:
        return int(_I64.unpack_from(self.body, self._skip(8))[0])

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


def decode_body(body: bytes | bytearray | memoryview) -> Record:
    """The record of one frame's body (type byte and payload)."""
    body = memoryview(body)
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


READ_CHUNK = 1 << 20
"""Most bytes read at once while no frame's length is known."""

CAPACITY = 4 + MAX_FRAME + READ_CHUNK
"""The decoder's buffer: an incomplete frame and one read always fit."""


class Decoder:
    """Records from bytes fed in any chunks (the header first): either :meth:`feed`, or
    read straight into :meth:`space` then :meth:`filled`. Its buffer is allocated once;
    a frame is parsed where it lies, and only a Write's data (and paths) are copied out.
    While a frame's length is known, :meth:`space` ends where that frame ends, so the
    buffer starts over empty after a big frame (its data is never moved)."""

    def __init__(self) -> None:
        self._buffer = bytearray(CAPACITY)
        self._view = memoryview(self._buffer)
        self._start = 0  # the first byte not yet parsed
        self._end = 0  # the end of the bytes read
        self._header = False

    def space(self) -> memoryview:
        """Where the next bytes go (never empty); then say how many with :meth:`filled`."""
        start, end = self._start, self._end
        want = READ_CHUNK
        if self._header and end - start >= 4:  # an incomplete frame: only its rest
            want = 4 + _U32.unpack_from(self._buffer, start)[0] - (end - start)
        if CAPACITY - end < want:
            # only the few bytes of a length cut by a read move: a frame whose length is
            # known began within a read of at most READ_CHUNK, so the rest of it fits
            self._view[: end - start] = self._view[start:end]
            self._start, self._end = 0, end - start
        return self._view[self._end : self._end + want]

    def filled(self, count: int) -> list[Record]:
        """The records completed by ``count`` more bytes written into :meth:`space`."""
        self._end += count
        records: list[Record] = []
        if not self._header:
            got = bytes(self._view[self._start : self._end])
            if len(got) < len(HEADER):
                if not HEADER.startswith(got):
                    check_header(got + b"\0" * len(HEADER))
                return records
            check_header(got[: len(HEADER)])
            self._start += len(HEADER)
            self._header = True
        while self._end - self._start >= 4:
            size = _U32.unpack_from(self._buffer, self._start)[0]
            if size > MAX_FRAME:
                raise StreamError(f"a frame of {size} bytes (at most {MAX_FRAME})")
            at = self._start + 4
            if self._end < at + size:
                break
            records.append(decode_body(self._view[at : at + size]))
            self._start = at + size
        if self._start == self._end:
            self._start = self._end = 0
        return records

    def feed(self, chunk: bytes) -> list[Record]:
        """The records completed by ``chunk``."""
        records: list[Record] = []
        rest = memoryview(chunk)
        while rest:
            room = self.space()
            count = min(len(room), len(rest))
            room[:count] = rest[:count]
            rest = rest[count:]
            records += self.filled(count)
        return records

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (a stream that ends here was cut)."""
        return self._end - self._start
