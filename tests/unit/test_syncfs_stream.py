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


# -- the fast paths: pieces sent without copying data, bytes read into the decoder --------


def read_into(decoder: Decoder, data: bytes, most: int = 1 << 30) -> list[Record]:
    """``data`` written into the decoder's own space, at most ``most`` bytes at a time (as
    the applier's reads from a pipe), and the records they complete."""
    records: list[Record] = []
    at = 0
    while at < len(data):
        room = decoder.space()
        assert len(room) > 0
        count = min(len(room), most, len(data) - at)
        room[:count] = data[at : at + count]
        at += count
        records += decoder.filled(count)
    return records


BIG = Write(b"d/big", 1 << 40, bytes(range(256)) * (MAX_DATA // 256))


def test_a_stream_cut_at_every_byte_reads_the_same_records() -> None:
    records: list[Record] = [Hello(1), Write(b"d/f", 5, bytes(range(256)) * 3), Commit(1)]
    data = HEADER + b"".join(stream.encode(r) for r in records)
    for cut in range(len(data) + 1):
        decoder = Decoder()
        assert read_into(decoder, data[:cut]) + read_into(decoder, data[cut:]) == records
        assert decoder.pending == 0


def test_a_write_of_a_mebibyte_read_64_kib_at_a_time() -> None:
    data = HEADER + stream.encode(BIG) + stream.encode(Commit(2))
    decoder = Decoder()
    assert read_into(decoder, data, 1 << 16) == [BIG, Commit(2)]
    assert decoder.pending == 0


def test_the_space_ends_where_a_frame_whose_length_is_known_ends() -> None:
    decoder = Decoder()
    frame_bytes = stream.encode(BIG)
    assert read_into(decoder, HEADER + frame_bytes[:1000]) == []
    assert len(decoder.space()) == len(frame_bytes) - 1000
    assert read_into(decoder, frame_bytes[1000:]) == [BIG]


def test_small_frames_then_a_big_one_in_reads_that_cut_anywhere() -> None:
    small: list[Record] = [Unlink(b"x" * 200 + b"/%d" % i) for i in range(6000)]  # > 1 MiB
    records = [*small, BIG, Commit(3)]
    data = HEADER + b"".join(stream.encode(r) for r in records)
    decoder = Decoder()
    assert read_into(decoder, data, 700_000) == records
    assert decoder.pending == 0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, MAX_DATA), st.integers(0, 255)).map(
            lambda t: Write(b"f", t[0], bytes([t[1]]) * t[0])
        ),
        min_size=1,
        max_size=5,
    ),
    st.integers(1, 3 << 20),
)
def test_writes_of_any_size_round_trip_in_reads_of_any_size(
    records: list[Write], most: int
) -> None:
    data = HEADER + b"".join(stream.encode(r) for r in records)
    decoder = Decoder()
    assert read_into(decoder, data, most) == records
    assert decoder.pending == 0


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (HEADER + struct.pack(">I", MAX_FRAME + 1), f"at most {MAX_FRAME}"),
        (HEADER + struct.pack(">I", 0xFFFFFFFF), "at most"),
        (
            HEADER + frame(2, p(b"f") + struct.pack(">QI", 0, MAX_DATA + 1)),
            f"at most {MAX_DATA}",
        ),
        (HEADER + frame(2, p(b"f") + struct.pack(">QI", 0, 100) + b"x" * 99), "truncated"),
        (HEADER + frame(2, p(b"f") + struct.pack(">QI", 0, 1) + b"xy"), "1 extra bytes"),
        (b"MQSF\x09" + stream.encode(BIG), "stream version 9"),
    ],
)
def test_hostile_bytes_read_into_the_buffer_are_refused_with_the_reason(
    data: bytes, words: str
) -> None:
    with pytest.raises(StreamError) as caught:
        read_into(Decoder(), data, 1 << 16)
    assert words in str(caught.value)


def test_a_writes_data_is_its_own_piece_and_small_frames_are_joined() -> None:
    records: list[Record] = [Create(b"f", 0o644, 0, 0), BIG, Commit(1), Commit(2)]
    pieces = stream.encode_all(records)
    assert pieces[1] is BIG.data  # sent as the kernel gave it, not copied
    assert len(pieces) == 3
    assert b"".join(pieces) == b"".join(stream.encode(r) for r in records)
    assert stream.encode_all([Commit(1), Write(b"f", 0, b"small")]) == [
        stream.encode(Commit(1)) + stream.encode(Write(b"f", 0, b"small"))
    ]


def test_a_frame_begun_at_the_end_of_the_buffer_is_moved_to_the_front_intact() -> None:
    """Frames of 8 bytes after the 5-byte header: the second 1 MiB read ends 3 bytes into
    the big frame's length, so little room is left and those bytes move to the front."""
    count = (2 * stream.READ_CHUNK - len(HEADER)) // 8
    small = stream.encode(Unlink(b"a"))
    assert len(small) == 8
    data = HEADER + small * count + stream.encode(BIG) + stream.encode(Commit(4))
    decoder = Decoder()
    records = read_into(decoder, data)
    assert len(records) == count + 2
    assert records[-2:] == [BIG, Commit(4)]
    assert decoder.pending == 0
