"""The receiver's epoch guard where a standby takes pushes from one active after another.

Three nodes: alpha was active in epoch 5, froze; beta took over in epoch 6 and pushed to
the standby gamma, whose own saved epoch is still 0 (it never promoted). An alpha that
thaws and pushes before it hears beta must not put its older files over beta's.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import admitted, receive
from mosqit_failover.sync.receive import Refused
from tests.unit.test_sync_receive import SERVER, receiver_config_text

Setup = tuple[configuration.Config, StateFile, Path]


@pytest.fixture
def gamma(tmp_path: Path) -> Setup:
    """A standby that never promoted: saved epoch 0."""
    dest = tmp_path / "dest"
    cfg = configuration.parse(receiver_config_text(tmp_path, dest))
    state = StateFile(cfg.state_dir / "state.json")
    state.save(0, Role.STANDBY)
    return cfg, state, dest


def push(setup: Setup, epoch: int) -> list[str]:
    """A push's checks and admission, as the forced command does them (then its rsync)."""
    cfg, state, dest = setup
    argv = receive.decide(f"mosqit-sync {epoch} {SERVER} . {dest}/", cfg, state)
    receive.hold_writing(epoch, state).release()
    return argv


def test_an_old_active_cannot_push_after_a_newer_one_did(gamma: Setup) -> None:
    cfg, _, _ = gamma
    push(gamma, 5)  # alpha, before its freeze
    push(gamma, 6)  # beta, after the failover
    with pytest.raises(
        Refused, match=r"older than that of a sender which already wrote here \(6\)"
    ):
        push(gamma, 5)  # alpha, thawed
    with pytest.raises(Refused, match=str(admitted.record_file(cfg.state_dir))):
        push(gamma, 5)  # the refusal names the record (the fix for a reset cluster)
    push(gamma, 6)  # beta again
    push(gamma, 7)  # and whoever comes next
    with pytest.raises(Refused, match=r"\(7\)"):
        push(gamma, 6)
    assert admitted.admitted(cfg.state_dir) == 7


def test_the_rename_form_is_guarded_the_same_way(gamma: Setup) -> None:
    cfg, state, dest = gamma
    push(gamma, 6)
    with pytest.raises(Refused, match="already wrote here"):
        receive.decide_move(f"mosqit-sync 5 --move {dest}", cfg, state)
    assert receive.decide_move(f"mosqit-sync 6 --move {dest}", cfg, state) == str(dest)


def test_a_sender_older_than_the_data_this_node_holds_is_refused(gamma: Setup) -> None:
    """No push admitted yet (a fresh record), but the active of epoch 6 had listed gamma
    in sync: its data is of epoch 6."""
    _, state, _ = gamma
    state.save_data_epoch(6)
    with pytest.raises(Refused, match=r"older than the data this node holds \(epoch 6"):
        push(gamma, 5)
    push(gamma, 6)


def test_a_refused_sender_raises_nothing(gamma: Setup) -> None:
    """The record moves only for a sender that passed every other check."""
    cfg, state, _ = gamma
    state.save(4, Role.STANDBY)
    with pytest.raises(Refused, match="older than this node's 4"):
        push(gamma, 3)
    with pytest.raises(Refused, match="not a synced directory"):
        receive.decide(f"mosqit-sync 9 {SERVER} . /etc/", cfg, state)
    assert admitted.admitted(cfg.state_dir) == 0
    push(gamma, 4)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"-3\n", b"9" * 40, b"\xff\xfe"])
def test_a_damaged_record_counts_as_none_and_is_rewritten(gamma: Setup, content: bytes) -> None:
    cfg, _, _ = gamma
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    admitted.record_file(cfg.state_dir).write_bytes(content)
    push(gamma, 2)
    assert admitted.admitted(cfg.state_dir) == 2


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sync-epoch", r"cannot read .*/sync-epoch: .*must be a file the receiver can read"),
        (admitted.LOCK_NAME, r"cannot record the sender's epoch in .*/sync-epoch\.lock: "),
        (admitted.GATE_NAME, r"cannot record the sender's epoch in .*/sync-epoch\.gate: "),
    ],
)
def test_a_record_that_cannot_be_kept_refuses_with_the_fix(
    gamma: Setup, name: str, reason: str
) -> None:
    cfg, _, _ = gamma
    (cfg.state_dir / name).mkdir(parents=True)  # not a file
    with pytest.raises(Refused, match=reason):
        push(gamma, 6)
    record = admitted.record_file(cfg.state_dir)
    assert not record.is_file() or admitted.admitted(cfg.state_dir) == 0


def test_the_forced_command_refuses_the_old_active_in_one_line(
    gamma: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, _, dest = gamma
    config = tmp_path / "etc" / "c.toml"
    config.parent.mkdir()
    config.write_text(receiver_config_text(tmp_path, dest))
    push(gamma, 6)
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"mosqit-sync 5 --move {dest}")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert receive.main(["--config", str(config)]) == receive.REFUSED_EXIT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("mosqit-sync refused: the sender's epoch 5")


def test_the_record_is_rewritten_in_place_never_emptied_first(gamma: Setup) -> None:
    """A helper's attack: truncating before writing left an empty record when the write
    failed (a full disk), and an older sender then got in."""
    cfg, _, _ = gamma
    record = admitted.record_file(cfg.state_dir)
    push(gamma, 6)
    six = b"0000000000000000006\n"
    assert record.read_bytes() == six * 2  # admitted, and no older push writes any more
    record.write_bytes(six + b"x" * 100)  # longer, as after damage
    push(gamma, 7)
    assert record.read_bytes() == b"0000000000000000007\n" * 2


def test_a_record_above_any_sendable_epoch_counts_as_damaged(gamma: Setup) -> None:
    cfg, _, _ = gamma
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    admitted.record_file(cfg.state_dir).write_bytes(b"9999999999999999999\n")
    push(gamma, 3)
    assert admitted.admitted(cfg.state_dir) == 3
