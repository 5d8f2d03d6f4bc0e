"""The synchronous mode's record stream: round trip, bounds, and hostile bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosqit_failover.syncfs import stream
from mosqit_failover.syncfs.records import (
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
)
from mosqit_failover.syncfs.stream import HEADER, MAX_DATA, MAX_FRAME, Decoder, StreamError

EVERY: list[Record] = [
    Hello(7),
    Write(b"a/b", 10, b"data"),
    Write(b"empty", 0, b""),
    SetSize(b"a/b", 1 << 40),
    Create(b"n\xff\xfeame", 0o100644, 1000, 1000),
    Mkdir(b"d", 0o40755, 0, 0),
    Rmdir(b"d"),
    Unlink(b"a/b"),
    Rename(b"a", b"b/c"),
    Symlink(b"s", b"/etc/passwd", 0, 0),
    Link(b"a", b"b"),
    Chmod(b"a", 0o4755),
    Chown(b"a", 0xFFFFFFFF, 5),
    Utimes(b"a", -1, 1_700_000_000_123_456_789),
    Commit(3),
]


def test_every_record_round_trips_in_one_feed_and_byte_by_byte() -> None:
    data = HEADER + b"".join(stream.encode(r) for r in EVERY)
    assert Decoder().feed(data) == EVERY
    decoder = Decoder()
    out: list[Record] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == EVERY
    assert decoder.pending == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.builds(
            Write,
            st.lists(
                st.binary(min_size=1, max_size=20).filter(
                    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
                ),
                min_size=1,
                max_size=4,
            ).map(b"/".join),
            st.integers(0, (1 << 64) - 1),
            st.binary(max_size=200),
        ),
        max_size=10,
    ),
    st.integers(1, 50),
)
def test_any_writes_round_trip_in_any_chunks(records: list[Write], chunk: int) -> None:
    data = HEADER + b"".join(stream.encode(r) for r in records)
    decoder = Decoder()
    out: list[Record] = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i : i + chunk])
    assert out == records


@pytest.mark.parametrize(
    "path",
    [b"", b"/etc/passwd", b"../x", b"a/../../x", b"a//b", b"./a", b"a/.", b"a\0b", b"x" * 256],
)
def test_the_encoder_refuses_a_path_leaving_the_directory(path: bytes) -> None:
    with pytest.raises(BadPath):
        stream.encode(Unlink(path))


def frame(kind: int, payload: bytes) -> bytes:
    body = bytes([kind]) + payload
    return struct.pack(">I", len(body)) + body


def p(path: bytes) -> bytes:
    return struct.pack(">H", len(path)) + path


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"GET / HTTP/1.1\r\n", "not a mosqit sync stream"),
        (b"MQSF\x02", "stream version 2"),
        (HEADER + struct.pack(">I", MAX_FRAME + 1), f"at most {MAX_FRAME}"),
        (HEADER + struct.pack(">I", 0xFFFFFFFF), "at most"),
        (HEADER + struct.pack(">I", 0), "an empty frame"),
        (HEADER + frame(99, b""), "unknown record type 99"),
        (HEADER + frame(7, p(b"../../etc/shadow")), "'..'"),
        (HEADER + frame(7, p(b"/etc/shadow")), "absolute"),
        (HEADER + frame(7, p(b"a\0b")), "NUL"),
        (HEADER + frame(7, p(b"a") + b"junk"), "4 extra bytes"),
        (HEADER + frame(7, struct.pack(">H", 50) + b"short"), "truncated"),
        (HEADER + frame(1, b"\0\0"), "truncated"),
        (
            HEADER + frame(2, p(b"f") + struct.pack(">QI", 0, MAX_DATA + 1)),
            f"at most {MAX_DATA}",
        ),
        (HEADER + frame(9, p(b"s") + p(b"") + b"\0" * 8), "empty symlink"),
    ],
)
def test_hostile_bytes_are_refused_with_the_reason(data: bytes, words: str) -> None:
    with pytest.raises(StreamError, match=None) as caught:
        Decoder().feed(data)
    assert words in str(caught.value)


def test_a_huge_length_is_refused_before_anything_is_buffered() -> None:
    decoder = Decoder()
    with pytest.raises(StreamError):
        decoder.feed(HEADER + struct.pack(">I", 1 << 31) + b"x" * 10)


def test_a_cut_stream_says_how_much_is_pending() -> None:
    decoder = Decoder()
    data = HEADER + stream.encode(Write(b"f", 0, b"x" * 100))
    assert decoder.feed(data[:-10]) == []
    assert decoder.pending == len(data) - len(HEADER) - 10


def test_values_that_do_not_fit_are_refused_by_the_encoder() -> None:
    with pytest.raises(StreamError):
        stream.encode(SetSize(b"f", -1))
    with pytest.raises(StreamError):
        stream.encode(Chmod(b"f", 1 << 32))
    with pytest.raises(StreamError):
        stream.encode(Utimes(b"f", 1 << 63, 0))
    with pytest.raises(StreamError):
        stream.encode(Write(b"f", 0, b"x" * (MAX_DATA + 1)))
