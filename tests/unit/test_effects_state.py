"""The state file: round trip, atomic replacement, and loud failure on corruption."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from mosqit_failover.effects import EffectError
from mosqit_failover.effects.state import VERSION, DataEpochWriter, StateError, StateFile
from mosqit_failover.events import Role


def test_missing_file_means_a_fresh_node(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "state.json").load() == (0, Role.WAITING)


@pytest.mark.parametrize("role", list(Role))
def test_round_trip(tmp_path: Path, role: Role) -> None:
    state = StateFile(tmp_path / "state.json")
    state.save(41, role)
    assert state.load() == (41, role)
    assert StateFile(tmp_path / "state.json").load() == (41, role)


def test_content_is_versioned_json(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(path).save(7, Role.ACTIVE)
    assert json.loads(path.read_text()) == {"version": VERSION, "epoch": 7, "role": "ACTIVE"}


def test_save_replaces_and_creates_the_directory(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "deep" / "dir" / "state.json")
    state.save(1, Role.STANDBY)
    state.save(2, Role.ACTIVE)
    assert state.load() == (2, Role.ACTIVE)
    assert os.listdir(tmp_path / "deep" / "dir") == ["state.json"]


def test_save_async(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    asyncio.run(state.save_async(3, Role.DEMOTING))
    assert asyncio.run(state.load_async()) == (3, Role.DEMOTING)


def test_temp_file_left_by_a_crash_is_ignored_and_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(path)
    state.save(5, Role.ACTIVE)
    # A crash between writing the temp file and renaming it: half a new state.
    leftover = tmp_path / ".state.json.tmp-crash1"
    leftover.write_text('{"version": 1, "epoch": 6, "ro')
    assert state.load() == (5, Role.ACTIVE)
    # Also before the first save ever completed: still a fresh node.
    fresh = StateFile(tmp_path / "other.json")
    (tmp_path / ".other.json.tmp-x").write_text("{")
    assert fresh.load() == (0, Role.WAITING)
    state.save(6, Role.STANDBY)
    assert not leftover.exists()
    assert state.load() == (6, Role.STANDBY)


def test_failed_save_leaves_the_old_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(path)
    state.save(9, Role.ACTIVE)
    path.parent.chmod(0o500)
    try:
        if os.access(path.parent, os.W_OK):  # root ignores the mode bits: use a bad path
            bad = StateFile(path / "not-a-dir" / "state.json")
            with pytest.raises(StateError, match="cannot save the state file"):
                bad.save(10, Role.ACTIVE)
        else:
            with pytest.raises(StateError, match=str(path)):
                state.save(10, Role.STANDBY)
    finally:
        path.parent.chmod(0o700)
    assert state.load() == (9, Role.ACTIVE)
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "corrupt"),
        (b"{not json", "corrupt"),
        (b"\xff\xfe", "corrupt"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"epoch": 3, "role": "ACTIVE"}', "version None"),
        (b'{"version": 99, "epoch": 3, "role": "ACTIVE"}', "version 99"),
        (b'{"version": 1, "epoch": -1, "role": "ACTIVE"}', "epoch -1"),
        (b'{"version": 1, "epoch": "3", "role": "ACTIVE"}', "epoch '3'"),
        (b'{"version": 1, "epoch": true, "role": "ACTIVE"}', "epoch True"),
        (b'{"version": 1, "epoch": 3, "role": "KING"}', "role 'KING'"),
    ],
)
def test_corrupt_file_is_an_error_never_epoch_zero(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError) as caught:
        StateFile(path).load()
    message = str(caught.value)
    assert str(path) in message
    assert why in message
    assert "delete it" in message  # the fix
    assert isinstance(caught.value, EffectError)


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # reading a directory fails even for root
    with pytest.raises(StateError, match=f"cannot read the state file {path}"):
        StateFile(path).load()


def test_bad_epoch_is_refused_before_writing(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    with pytest.raises(ValueError):
        state.save(-1, Role.ACTIVE)
    assert state.load() == (0, Role.WAITING)


def test_the_data_epoch_is_kept_across_saves_and_lowered_when_withdrawn(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    assert state.load_data_epoch() == 0  # a node that never ran
    state.save(3, Role.STANDBY)
    state.save_data_epoch(7)
    state.save(3, Role.WAITING)  # a plan's PersistState does not know the data epoch
    assert state.load() == (3, Role.WAITING)
    assert state.load_data_epoch() == 7
    state.save_data_epoch(6)  # withdrawn: missed writes of epoch 7
    assert state.load() == (3, Role.WAITING) and state.load_data_epoch() == 6
    assert json.loads((tmp_path / "state.json").read_text())["data_epoch"] == 6


class CountingStateFile(StateFile):
    """A real state file that counts its data-epoch writes (and the values, in order)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.written: list[int] = []

    def save_data_epoch(self, data_epoch: int) -> None:
        super().save_data_epoch(data_epoch)
        self.written.append(data_epoch)


def test_the_data_epoch_writer_keeps_the_core_order_and_skips_values_overtaken(
    tmp_path: Path,
) -> None:
    state = CountingStateFile(tmp_path / "state.json")
    notes: list[str] = []

    async def flap() -> None:
        writer = DataEpochWriter(state, notes.append)
        writer.write(7)  # recorded
        await asyncio.sleep(0)  # the writer takes it
        for epoch in (6, 7, 6, 7, 6):  # withdrawn, recorded again, ... while 7 is written
            writer.write(epoch)
        assert writer.writing is not None
        await writer.writing
        writer.write(7)
        assert writer.writing is not None
        await writer.writing

    asyncio.run(flap())
    assert state.written == [7, 6, 7]  # the first, the last of the flaps, the next
    assert state.load_data_epoch() == 7 and notes == []


def test_the_data_epoch_writer_says_when_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    notes: list[str] = []

    async def write() -> None:
        writer = DataEpochWriter(StateFile(tmp_path / "file" / "state.json"), notes.append)
        writer.write(3)
        assert writer.writing is not None
        await writer.writing

    asyncio.run(write())
    assert len(notes) == 1 and notes[0].startswith("cannot record data epoch 3: ")
    assert "state.json" in notes[0]


def test_a_state_file_without_data_epoch_reads_as_zero(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "epoch": 4, "role": "ACTIVE"}')
    assert StateFile(path).load_data_epoch() == 0


@pytest.mark.parametrize("value", ['"9"', "true", "-3", "1.5", "null"])
def test_a_data_epoch_that_is_no_whole_number_counts_as_zero(tmp_path: Path, value: str) -> None:
    """Less fresh is the safe side: such a node is never elected for its data."""
    path = tmp_path / "state.json"
    path.write_text(f'{{"version": 1, "epoch": 4, "role": "STANDBY", "data_epoch": {value}}}')
    state = StateFile(path)
    assert state.load() == (4, Role.STANDBY)
    assert state.load_data_epoch() == 0
