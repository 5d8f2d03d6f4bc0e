"""The standby's applier of the synchronous mode: applies, fsyncs, acknowledges, refuses.

In process (apply.run with byte streams) and once as the real process
(python -m mosqit_failover.syncfs apply) fed through a pipe, as ssh would.
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync.commands import REFUSED
from mosqit_failover.sync.receive import REFUSED_EXIT
from mosqit_failover.syncfs import apply, stream
from mosqit_failover.syncfs.records import (
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
from tests.unit.stream_sender import converse


def as_stream(records: list[Record], header: bytes = stream.HEADER) -> bytes:
    return header + b"".join(stream.encode(r) for r in records)


class Standby:
    """A standby in a temp dir: its synced directory, its state (epoch 5, STANDBY)."""

    def __init__(self, tmp: Path, epoch: int = 5, role: Role = Role.STANDBY) -> None:
        self.root = tmp / "data"
        self.root.mkdir()
        self.outside = tmp / "outside"
        self.outside.mkdir()
        (self.outside / "secret").write_bytes(b"untouched")
        os.chmod(self.outside / "secret", 0o600)
        self.state = StateFile(tmp / "state.json")
        self.state.save(epoch, role)

    def run(self, data: bytes) -> tuple[int, list[str]]:
        out = io.StringIO()
        args = argparse.Namespace(root=str(self.root), state=str(self.state.path))
        code = apply.run(args, io.BytesIO(data), out)
        return code, out.getvalue().splitlines()

    def outside_intact(self) -> bool:
        secret = self.outside / "secret"
        return (
            secret.read_bytes() == b"untouched"
            and stat.S_IMODE(secret.stat().st_mode) == 0o600
            and sorted(os.listdir(self.outside)) == ["secret"]
        )


@pytest.fixture
def standby(tmp_path: Path) -> Standby:
    return Standby(tmp_path)


def test_applies_every_record_and_acknowledges_each_commit(standby: Standby) -> None:
    code, lines = standby.run(
        as_stream(
            [
                Hello(5),
                Mkdir(b"d", 0o750, 0, 0),
                Create(b"d/f", 0o640, 0, 0),
                Write(b"d/f", 0, b"hello world"),
                Commit(1),
                SetSize(b"d/f", 5),
                Link(b"d/f", b"hard"),
                Symlink(b"sym", b"d/f", 0, 0),
                Utimes(b"d/f", 1_000_000_000, 2_000_000_000),
                Create(b"tmp", 0o644, 0, 0),
                Write(b"tmp", 0, b"new"),
                Rename(b"tmp", b"hard"),  # over an existing file
                Mkdir(b"gone", 0o755, 0, 0),
                Rmdir(b"gone"),
                Chmod(b"d", 0o700),
                Chown(b"d/f", 0xFFFFFFFF, 0),
                Commit(2),
            ]
        )
    )
    assert (code, lines) == (0, ["ready 5", "ok 1", "ok 2"])
    root = standby.root
    assert (root / "d" / "f").read_bytes() == b"hello"
    assert (root / "hard").read_bytes() == b"new"
    assert os.readlink(root / "sym") == "d/f"
    assert (root / "d" / "f").stat().st_mtime_ns == 2_000_000_000
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "d" / "f").stat().st_mode) == 0o640
    assert not (root / "gone").exists()
    code, lines = standby.run(as_stream([Hello(5), Unlink(b"sym"), Unlink(b"nothing"), Commit(3)]))
    assert (code, lines) == (0, ["ready 5", "ok 3"])
    assert not (root / "sym").is_symlink()


def test_setuid_and_setgid_bits_are_stripped(standby: Standby) -> None:
    code, _ = standby.run(
        as_stream(
            [
                Hello(5),
                Create(b"a", 0o4755, 0, 0),
                Create(b"b", 0o644, 0, 0),
                Chmod(b"b", 0o2755),
                Commit(1),
            ]
        )
    )
    assert code == 0
    assert stat.S_IMODE((standby.root / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((standby.root / "b").stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("epoch", "role", "words"),
    [
        (4, Role.STANDBY, "older than this node's 5"),
        (9, Role.ACTIVE, "this node is ACTIVE"),
    ],
)
def test_a_stale_or_unwelcome_sender_is_refused_before_any_change(
    tmp_path: Path, epoch: int, role: Role, words: str
) -> None:
    node = Standby(tmp_path, epoch=5 if role is Role.STANDBY else 9, role=role)
    code, lines = node.run(as_stream([Hello(epoch), Create(b"f", 0o644, 0, 0), Commit(1)]))
    assert code == REFUSED_EXIT
    assert len(lines) == 1 and lines[0].startswith("refused: ") and words in lines[0]
    assert os.listdir(node.root) == []


def test_a_standby_that_promoted_mid_stream_acknowledges_nothing_more(standby: Standby) -> None:
    data = as_stream([Hello(5), Create(b"f", 0o644, 0, 0), Commit(1)])
    out = io.StringIO()

    class Promoting(io.BytesIO):
        """Hands out the stream in two parts; the node promotes (epoch 6) in between."""

        def __init__(self) -> None:
            super().__init__()
            self.parts = [data, stream.encode(Write(b"f", 0, b"x")) + stream.encode(Commit(2))]

        def read1(self, size: int | None = -1) -> bytes:
            if len(self.parts) == 1:
                standby.state.save(6, Role.ACTIVE)
            return self.parts.pop(0) if self.parts else b""

    args = argparse.Namespace(root=str(standby.root), state=str(standby.state.path))
    assert apply.run(args, Promoting(), out) == REFUSED_EXIT
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["ready 5", "ok 1"]
    assert lines[2].startswith("refused: ") and "ACTIVE" in lines[2]


@pytest.mark.parametrize(
    ("records", "words"),
    [
        ([Create(b"f", 0o644, 0, 0)], "must start with the sender's epoch"),
        ([Hello(5), Hello(5)], "a second hello"),
        ([Hello(5), Write(b"missing", 0, b"x")], "out of step"),
        ([Hello(5), Mkdir(b"d", 0o755, 0, 0), Create(b"d", 0o644, 0, 0)], "is a directory"),
    ],
)
def test_streams_that_make_no_sense_are_refused(
    standby: Standby, records: list[Record], words: str
) -> None:
    code, lines = standby.run(as_stream(records))
    assert code == REFUSED_EXIT
    assert lines[-1].startswith("refused: ") and words in lines[-1], lines


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.0\r\n\r\n",
        b"MQSF\x09",
        stream.HEADER + b"\xff\xff\xff\xff",
        as_stream([Hello(5)]) + b"\x00\x00\x00\x10\x07",  # cut inside a record
        as_stream([Hello(5)]) + b"\x00\x00\x00\x03\x07\x00\x00",  # an empty path
        as_stream([Hello(5)]) + b"\x00\x00\x00\x06\x07\x00\x03../",
    ],
)
def test_malformed_input_is_refused_in_one_line(standby: Standby, data: bytes) -> None:
    code, lines = standby.run(data)
    if not data:
        assert (code, lines) == (0, [])  # nothing asked, nothing done
        return
    assert code == REFUSED_EXIT
    assert lines[-1].startswith("refused: ")
    assert os.listdir(standby.root) == []


def test_symlink_tricks_never_reach_outside_the_directory(standby: Standby) -> None:
    """A stream may create symlinks (they are data), but the applier never follows one."""
    outside = str(standby.outside)
    secret = str(standby.outside / "secret")
    attempts: list[list[Record]] = [
        [Symlink(b"dir", outside.encode(), 0, 0), Create(b"dir/new", 0o644, 0, 0)],
        [Symlink(b"dir", outside.encode(), 0, 0), Write(b"dir/secret", 0, b"owned")],
        [Symlink(b"file", secret.encode(), 0, 0), Write(b"file", 0, b"owned")],
        [Symlink(b"file", secret.encode(), 0, 0), SetSize(b"file", 0)],
        [Symlink(b"dir", outside.encode(), 0, 0), Unlink(b"dir/secret")],
        [Symlink(b"dir", outside.encode(), 0, 0), Rename(b"dir/secret", b"stolen")],
        [Symlink(b"dir", outside.encode(), 0, 0), Link(b"dir/secret", b"stolen")],
        [Symlink(b"dir", outside.encode(), 0, 0), Mkdir(b"dir/x", 0o777, 0, 0)],
    ]
    for records in attempts:
        for entry in os.listdir(standby.root):
            os.unlink(standby.root / entry)
        code, lines = standby.run(as_stream([Hello(5), *records, Commit(1)]))
        assert code == REFUSED_EXIT, records
        assert "symlink" in lines[-1], lines
        assert standby.outside_intact(), records
    # on the link itself: chmod is skipped, chown and utimes touch the link, not the target
    code, lines = standby.run(
        as_stream(
            [
                Hello(5),
                Symlink(b"l", secret.encode(), 0, 0),
                Chmod(b"l", 0o777),
                Chown(b"l", 0, 0),
                Utimes(b"l", 0, 0),
                Commit(1),
            ]
        )
    )
    assert (code, lines) == (0, ["ready 5", "ok 1"])
    assert standby.outside_intact()
    assert (standby.outside / "secret").stat().st_mtime_ns != 0


def test_the_directory_must_be_its_own_real_path(tmp_path: Path) -> None:
    node = Standby(tmp_path)
    (tmp_path / "via").symlink_to(node.root)
    out = io.StringIO()
    args = argparse.Namespace(root=str(tmp_path / "via"), state=str(node.state.path))
    assert apply.run(args, io.BytesIO(as_stream([Hello(5)])), out) == REFUSED_EXIT
    assert "leads through a symlink" in out.getvalue()
    args = argparse.Namespace(root="relative/dir", state=str(node.state.path))
    assert apply.run(args, io.BytesIO(b""), io.StringIO()) == REFUSED_EXIT


def test_a_corrupt_state_file_is_a_refusal_not_epoch_zero(standby: Standby) -> None:
    standby.state.path.write_text("{not json")
    code, lines = standby.run(as_stream([Hello(9)]))
    assert code == REFUSED_EXIT
    assert "cannot read this node's epoch" in lines[-1]


def test_as_a_process_reading_stdin_answering_on_stdout(standby: Standby) -> None:
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "apply"]
    argv += ["--root", str(standby.root), "--state", str(standby.state.path)]
    data = as_stream([Hello(5), Create(b"f", 0o644, 0, 0), Write(b"f", 0, b"x"), Commit(1)])
    done = converse(argv, data, answers=2)
    assert (done.returncode, done.stdout) == (0, b"ready 5\nok 1\n"), done.stderr
    assert (standby.root / "f").read_bytes() == b"x"
    done = subprocess.run(argv, input=as_stream([Hello(1)]), capture_output=True, timeout=30)
    assert done.returncode == REFUSED_EXIT
    assert done.stdout.startswith(b"refused: ")
    assert done.stderr.decode().startswith(REFUSED)
    assert b"Traceback" not in done.stderr


def test_mebibyte_writes_through_a_pipe_land_whole(standby: Standby) -> None:
    """The process reads straight into its decoder: writes of MAX_DATA bytes, each frame
    spanning several reads of the pipe, between small records."""
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "apply"]
    argv += ["--root", str(standby.root), "--state", str(standby.state.path)]
    blocks = [bytes([i]) * stream.MAX_DATA for i in range(3)]
    records: list[Record] = [Hello(5), Create(b"big", 0o644, 0, 0)]
    for i, block in enumerate(blocks):
        records += [Write(b"big", i * len(block), block), Utimes(b"big", 0, i)]
    done = converse(argv, as_stream([*records, Write(b"big", 1, b"xy"), Commit(1)]), answers=2)
    assert (done.returncode, done.stdout) == (0, b"ready 5\nok 1\n"), done.stderr
    expected = bytearray(b"".join(blocks))
    expected[1:3] = b"xy"
    assert (standby.root / "big").read_bytes() == expected
