"""The applier's record of the last commit it made durable, and the agent's reading of it
(docs/sync-mode.md, "Freshness"): written before the acknowledgement, never more than
applied, a torn or foreign record never believed, commits only in order."""

from __future__ import annotations

import argparse
import errno
import io
import os
import stat
from pathlib import Path

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync.receive import REFUSED_EXIT
from mosqit_failover.syncfs import apply, progress, stream
from mosqit_failover.syncfs.records import Commit, Create, Hello, Record, Write


def frames(records: list[Record]) -> bytes:
    return stream.HEADER + b"".join(stream.encode(r) for r in records)


def setup(tmp_path: Path) -> tuple[Path, StateFile, Path]:
    root = tmp_path / "spool"
    root.mkdir()
    state = StateFile(tmp_path / "state.json")
    state.save(5, Role.STANDBY)
    return root, state, progress.applied_path(tmp_path, str(root))


def serve(root: Path, state: StateFile, data: bytes) -> tuple[int, list[str]]:
    out = io.StringIO()
    args = argparse.Namespace(root=str(root), state=str(state.path))
    code = apply.run(args, io.BytesIO(data), out)
    return code, out.getvalue().splitlines()


def test_the_applier_records_its_last_commit_and_epoch(tmp_path: Path) -> None:
    root, state, path = setup(tmp_path)
    records: list[Record] = [Hello(5), Create(b"f", 0o644, 0, 0), Write(b"f", 0, b"x")]
    code, lines = serve(root, state, frames([*records, Commit(1_000_001), Commit(1_000_002)]))
    assert (code, lines) == (0, ["ready 5", "ok 1000001", "ok 1000002"])
    assert progress.decode(path.read_bytes()) == (5, 1_000_002)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_commit_not_above_the_last_is_refused_and_not_recorded_again(tmp_path: Path) -> None:
    root, state, path = setup(tmp_path)
    code, lines = serve(root, state, frames([Hello(5), Commit(10), Commit(10)]))
    assert code == REFUSED_EXIT
    assert lines == ["ready 5", "ok 10", "refused: commit 10 after commit 10: not in order"]
    assert progress.decode(path.read_bytes()) == (5, 10)  # the first one was made durable
    # a later stream of the same epoch goes on above the record: nobody lowers it
    code, lines = serve(root, state, frames([Hello(5), Commit(3)]))
    assert lines[-1] == "refused: commit 3 after commit 10: not in order"
    assert progress.decode(path.read_bytes()) == (5, 10)
    assert serve(root, state, frames([Hello(5), Commit(11)]))[1] == ["ready 5", "ok 11"]
    state.save(6, Role.STANDBY)  # a newer epoch's stream counts afresh
    assert serve(root, state, frames([Hello(6), Commit(1)]))[1] == ["ready 6", "ok 1"]
    assert progress.decode(path.read_bytes()) == (6, 1)


def test_a_stream_without_commits_records_nothing(tmp_path: Path) -> None:
    root, state, path = setup(tmp_path)
    assert serve(root, state, frames([Hello(5), Create(b"f", 0o644, 0, 0)]))[0] == 0
    assert not path.exists()


def test_a_record_that_failed_is_tried_again_with_the_next_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The breaker's finding 4: one failed write froze the record for the stream's life."""
    path = tmp_path / "state" / progress.DIRECTORY / "key"
    (tmp_path / "state").mkdir()
    path.parent.write_text("in the way")
    recorder = progress.AppliedRecorder(path)
    recorder.record(5, 1)
    recorder.record(5, 2)
    path.parent.unlink()
    recorder.record(5, 3)
    assert progress.decode(path.read_bytes()) == (5, 3) and recorder.last == (5, 3)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "cannot record" in err[0], err
    assert err[1].endswith("is recorded again in " + str(path) + " (commit 3)"), err
    recorder.close()


def test_a_state_directory_that_cannot_be_written_leaves_the_stream_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The standby then claims less than it applied, the safe side; said once."""
    root, state, path = setup(tmp_path)
    path.parent.parent.mkdir(exist_ok=True)
    path.parent.write_text("a file where the directory should be")
    code, lines = serve(root, state, frames([Hello(5), Commit(1), Commit(2)]))
    assert (code, lines) == (0, ["ready 5", "ok 1", "ok 2"])
    err = capsys.readouterr().err
    assert err.count("cannot record the commit applied") == 1
    assert "ranks as if it had applied less" in err


def test_the_record_is_the_digest_of_the_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert progress.applied_path(tmp_path, str(tmp_path / "link")) == progress.applied_path(
        tmp_path, str(tmp_path / "real")
    )
    assert progress.applied_path(tmp_path, "/srv/a") != progress.applied_path(tmp_path, "/srv/b")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        progress.encode(5, 9)[:-1],  # short
        progress.encode(5, 9) + b"x",  # long
        progress.encode(5, 9)[:20] + progress.encode(5, 10)[20:],  # torn between two writes
        b"XXXX" + progress.encode(5, 9)[4:],  # foreign magic (the CRC covers it)
    ],
)
def test_a_torn_short_or_foreign_record_is_none(data: bytes) -> None:
    assert progress.decode(data) is None


def test_the_reader_keeps_the_last_good_record_and_follows_in_place_rewrites(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    reader = progress.AppliedReader([first, second])
    assert reader.read() == ()  # no file yet
    writer = progress.AppliedRecorder(second)
    writer.record(4, 77)
    assert reader.read() == ((4, 77),)
    writer.record(5, 3)
    assert reader.read() == ((5, 3),)  # the open descriptor sees the rewrite
    fd = os.open(second, os.O_WRONLY)
    os.pwrite(fd, b"\0\0\0\0", 0)  # a half-done rewrite: the last good one stands
    os.close(fd)
    assert reader.read() == ((5, 3),)
    first.write_bytes(progress.encode(5, 2))
    assert reader.read() == ((5, 2), (5, 3))  # in the order of the paths
    writer.close()
    reader.close()


def test_encode_refuses_values_off_the_wire() -> None:
    with pytest.raises(ValueError):
        progress.encode(-1, 0)
    with pytest.raises(ValueError):
        progress.encode(0, 2**64)


def test_a_failed_fsync_is_refused_naming_the_file_and_nothing_is_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while the group commit writes the data out (tmpfs and the lab
    cannot make fsync fail: the one call is replaced)."""
    root, state, path = setup(tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    data = frames([Hello(5), Create(b"bill.txt", 0o644, 0, 0), Write(b"bill.txt", 0, b"x")])
    code, lines = serve(root, state, data + stream.encode(Commit(1)))
    assert code == REFUSED_EXIT
    assert lines == [
        "ready 5",
        "refused: cannot make bill.txt durable: No space left on device; this standby is "
        "out of step and must catch up",
    ]
    assert not path.exists()
