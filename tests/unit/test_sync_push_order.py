"""A newer sender's pushes start only once an older sender's pushes have stopped writing.

Three nodes: alpha (epoch 5) was pushing to gamma when it froze; beta took over (epoch 6).
Alpha's receiving rsync on gamma was still running when beta was admitted: had beta's
push started beside it, a thawed alpha would have put its older files over beta's as they
arrived. And a synchronous stream of alpha's admitted before beta must apply nothing once
beta was admitted (a helper's attack found it applying until gamma's agent heard beta).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import admitted, catchup, receive
from mosqit_failover.sync.counter import read_counter
from mosqit_failover.sync.receive import Refused
from mosqit_failover.syncfs.apply import Guard
from tests.unit.test_sync_receive import SERVER, receiver_config_text

Setup = tuple[configuration.Config, StateFile, Path]


@pytest.fixture
def gamma(tmp_path: Path) -> Setup:
    dest = tmp_path / "dest"
    dest.mkdir()
    cfg = configuration.parse(receiver_config_text(tmp_path, dest))
    state = StateFile(cfg.state_dir / "state.json")
    state.save(0, Role.STANDBY)
    return cfg, state, dest


def test_a_newer_sender_starts_once_the_older_push_ends(gamma: Setup) -> None:
    cfg, _, _ = gamma
    alpha = admitted.admit(cfg.state_dir, 5)  # alpha's rsync, writing
    started = threading.Event()
    beta: list[admitted.Writing] = []

    def beta_pushes() -> None:
        beta.append(admitted.admit(cfg.state_dir, 6, wait=30))
        started.set()

    thread = threading.Thread(target=beta_pushes)
    thread.start()
    try:
        assert not started.wait(0.3)  # waits while alpha's push writes
        assert admitted.admitted(cfg.state_dir) == 5  # not raised before alpha's ended
        alpha.release()
        assert started.wait(10)
    finally:
        alpha.release()
        thread.join()
    assert admitted.admitted(cfg.state_dir) == 6
    with pytest.raises(admitted.OlderSender):
        admitted.admit(cfg.state_dir, 5)  # alpha, thawed
    beta[0].release()


def test_a_newer_sender_is_refused_while_an_older_push_still_writes(gamma: Setup) -> None:
    cfg, _, _ = gamma
    with admitted.admit(cfg.state_dir, 5):
        with pytest.raises(admitted.OlderStillWriting, match=r"older sender \(epoch 5\)"):
            admitted.admit(cfg.state_dir, 6, wait=0.1)
        assert admitted.admitted(cfg.state_dir) == 5  # nothing changed: retried later
    with admitted.admit(cfg.state_dir, 6):
        assert admitted.admitted(cfg.state_dir) == 6


def test_pushes_of_one_sender_do_not_wait_for_each_other(gamma: Setup) -> None:
    """The sender starts a batch's rsync while the batch before it is in flight."""
    cfg, _, _ = gamma
    with admitted.admit(cfg.state_dir, 6), admitted.admit(cfg.state_dir, 6, wait=0):
        pass


def test_the_receiving_rsync_keeps_the_lock_until_it_exits(gamma: Setup, tmp_path: Path) -> None:
    """The forced command execs rsync: the lock goes with it, not with the command."""
    cfg, _, dest = gamma
    config = tmp_path / "etc" / "c.toml"
    config.parent.mkdir()
    config.write_text(receiver_config_text(tmp_path, dest))
    env = dict(os.environ, SSH_ORIGINAL_COMMAND=f"mosqit-sync 5 {SERVER} . {dest}/")
    # alpha's push: rsync started and waits for alpha's data, which never comes
    alpha = subprocess.Popen(
        [sys.executable, "-m", "mosqit_failover.sync.receive", "--config", str(config)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert alpha.stdout is not None
        alpha.stdout.read(4)  # rsync's protocol greeting: the forced command exec'd it
        assert admitted.admitted(cfg.state_dir) == 5
        with pytest.raises(admitted.OlderStillWriting):
            admitted.admit(cfg.state_dir, 6, wait=0.2)
    finally:
        alpha.kill()
        alpha.communicate()
    with admitted.admit(cfg.state_dir, 6, wait=10):
        assert admitted.admitted(cfg.state_dir) == 6


def test_the_refusal_reaches_the_sender_as_one_line(
    gamma: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, _, dest = gamma
    config = tmp_path / "etc" / "c.toml"
    config.parent.mkdir()
    config.write_text(receiver_config_text(tmp_path, dest))
    monkeypatch.setattr(admitted, "DRAIN_WAIT", 0.1)
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"mosqit-sync 6 --move {dest}")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with admitted.admit(cfg.state_dir, 5):
        assert receive.main(["--config", str(config)]) == receive.REFUSED_EXIT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "older sender (epoch 5) is still writing" in err[0], err
    assert admitted.admitted(cfg.state_dir) == 5


def test_a_stream_admitted_before_a_newer_sender_applies_nothing_more(gamma: Setup) -> None:
    cfg, state, dest = gamma
    root = receive._admit(5, str(dest), cfg, state)  # alpha's --syncfs request
    guard = Guard(state, root, command_epoch=5)
    guard.admit(5)
    guard.enter_chunk()
    guard.leave_chunk()
    receive._admit(6, str(dest), cfg, state)  # beta's push: no catch-up begun yet
    with pytest.raises(Refused, match=r"already wrote here \(6\)"):
        guard.enter_chunk()
    with pytest.raises(Refused, match=r"already wrote here \(6\)"):
        guard.acknowledge()
    guard.close()


def test_a_stream_whose_hello_comes_after_a_newer_sender_is_refused(gamma: Setup) -> None:
    """The attack's interleaving: alpha's request admitted, then beta's, then alpha's Hello."""
    cfg, state, dest = gamma
    root = receive._admit(5, str(dest), cfg, state)
    receive._admit(6, str(dest), cfg, state)
    catchup.begin(cfg.state_dir, str(dest))
    guard = Guard(state, root, command_epoch=5)
    with pytest.raises(Refused, match=r"already wrote here \(6\)"):
        guard.admit(5)
    guard.close()


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"7\n", 7),
        (b"0000000000000000006\n", 6),
        (b" 12 \nrest", 12),
        (b"", 0),
        (b"-3\n", 0),
        (b"1e3\n", 0),
        (b"\xd9\xa3\n", 0),  # an Arabic-Indic digit is no ASCII digit
        (b"1" * 20 + b"\n", 0),  # wider than any record we write
    ],
)
def test_a_counter_file_holds_one_plain_number(raw: bytes, value: int) -> None:
    assert read_counter(raw) == value
