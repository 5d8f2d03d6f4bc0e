"""A newer sender's pushes start only once an older sender's pushes have stopped writing.

Three nodes: alpha (epoch 5) was pushing to gamma when it froze; beta took over (epoch 6).
Alpha's receiving rsync on gamma was still running when beta was admitted: had beta's
push started beside it, a thawed alpha would have put its older files over beta's as they
arrived. And a synchronous stream of alpha's admitted before beta must apply nothing once
beta was admitted (a helper's attack found it applying until gamma's agent heard beta).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import admitted, catchup, receive
from mosqit_failover.sync.counter import read_counter
from mosqit_failover.sync.receive import Refused
from mosqit_failover.syncfs import remote
from mosqit_failover.syncfs.apply import CHECK_EVERY, Guard
from tests.unit.test_sync_receive import SERVER, receiver_config_text

Setup = tuple[configuration.Config, StateFile, Path]


def channel(epoch: int, dest: Path, cfg: configuration.Config, state: StateFile) -> str:
    """The synced directory of a ``--syncfs`` request of ``epoch``, admitted as the
    standby's forced command admits it (:func:`.remote.decide`)."""
    return remote.decide(f"mosqit-sync {epoch} --syncfs {dest}", cfg, state)[1]


def config_file(tmp_path: Path, dest: Path) -> Path:
    """The receiver's config, where its forced command reads it."""
    config = tmp_path / "etc" / "c.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(receiver_config_text(tmp_path, dest))
    return config


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
        assert admitted.admitted(cfg.state_dir) == 6  # raised first: alpha's push stops on it
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
        with pytest.raises(admitted.OlderStillWriting, match="still writing"):
            admitted.admit(cfg.state_dir, 6, wait=0.1)
        with pytest.raises(admitted.OlderStillWriting, match="still writing"):
            admitted.admit(cfg.state_dir, 6, wait=0.1)  # the retry waits again
        with pytest.raises(admitted.OlderSender):
            admitted.admit(cfg.state_dir, 5)  # and alpha starts nothing new meanwhile
    with admitted.admit(cfg.state_dir, 6, wait=0):
        assert admitted.admitted(cfg.state_dir) == 6


def test_pushes_of_one_sender_do_not_wait_for_each_other(gamma: Setup) -> None:
    """The sender starts a batch's rsync while the batch before it is in flight."""
    cfg, _, _ = gamma
    with admitted.admit(cfg.state_dir, 6), admitted.admit(cfg.state_dir, 6, wait=0):
        pass


class Push:
    """The forced command serving a push whose sender started rsync and then went quiet
    (froze): the receiving rsync runs, waiting for data."""

    def __init__(self, tmp_path: Path, dest: Path, epoch: int, options: str = "") -> None:
        config = config_file(tmp_path, dest)
        command = f"mosqit-sync {epoch} {SERVER}{options} . {dest}/"
        env = dict(os.environ, SSH_ORIGINAL_COMMAND=command)
        self.receiver = subprocess.Popen(
            [sys.executable, "-m", "mosqit_failover.sync.receive", "--config", str(config)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.receiver.stdout is not None
        self.receiver.stdout.read(4)  # rsync's protocol greeting: the server runs
        children = Path(f"/proc/{self.receiver.pid}/task/{self.receiver.pid}/children")
        self.rsync = int(children.read_text().split()[0])

    def rsync_gone(self) -> bool:
        """rsync and its forked receiver are gone (or zombies: they write nothing)."""
        for pid in (self.rsync, *self._forked):
            with contextlib.suppress(FileNotFoundError):
                if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
                    return False
        return True

    @property
    def _forked(self) -> list[int]:
        with contextlib.suppress(FileNotFoundError):
            children = Path(f"/proc/{self.rsync}/task/{self.rsync}/children").read_text()
            return [int(pid) for pid in children.split()]
        return []

    def ended(self) -> tuple[int, list[str]]:
        """The receiver's exit status and its stderr lines."""
        _, err = self.receiver.communicate(timeout=30)
        return self.receiver.returncode, err.decode().splitlines()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.rsync, signal.SIGKILL)  # rsync runs in a process group of its own
        self.receiver.kill()
        self.receiver.communicate()


@pytest.fixture
def pushes() -> Iterator[list[Push]]:
    started: list[Push] = []
    yield started
    for push in started:
        push.kill()


def refusal(err: list[str]) -> str:
    """The receiver's one refusal line, last; rsync's own words on its end before it."""
    assert err and err[-1].startswith("mosqit-sync refused: "), err
    assert all(line.startswith("rsync") for line in err[:-1]), err
    return err[-1]


def writing_lock_free(cfg: configuration.Config) -> bool:
    fd = os.open(cfg.state_dir / admitted.LOCK_NAME, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("options", ["", " --fsync"])
def test_a_running_push_stops_when_a_newer_sender_is_admitted(
    gamma: Setup, tmp_path: Path, pushes: list[Push], options: str
) -> None:
    cfg, _, dest = gamma
    alpha = Push(tmp_path, dest, 5, options)
    pushes.append(alpha)
    forked = alpha._forked
    assert not writing_lock_free(cfg)
    with admitted.admit(cfg.state_dir, 6, wait=20):  # beta: starts once alpha's rsync died
        assert alpha.rsync_gone() and not any(Path(f"/proc/{p}/cmdline").exists() for p in forked)
        code, err = alpha.ended()
    assert code == receive.REFUSED_EXIT
    assert "already wrote here (6)" in refusal(err), err


def test_a_running_push_stops_when_this_node_promotes(
    gamma: Setup, tmp_path: Path, pushes: list[Push]
) -> None:
    """Alpha froze mid-push, gamma took over: the thawed alpha writes nothing more here."""
    cfg, state, dest = gamma
    alpha = Push(tmp_path, dest, 5)
    pushes.append(alpha)
    state.save(6, Role.ACTIVE)
    code, err = alpha.ended()
    assert code == receive.REFUSED_EXIT
    assert "this node is ACTIVE (epoch 6)" in refusal(err), err
    assert writing_lock_free(cfg)


def test_a_push_of_the_same_sender_leaves_a_running_one_alone(
    gamma: Setup, tmp_path: Path, pushes: list[Push]
) -> None:
    cfg, _, dest = gamma
    alpha = Push(tmp_path, dest, 5)
    pushes.append(alpha)
    with admitted.admit(cfg.state_dir, 5, wait=0):  # alpha's next batch
        pass
    assert alpha.receiver.poll() is None


def test_a_push_stopped_mid_file_leaves_no_temporary_file(gamma: Setup, tmp_path: Path) -> None:
    """Alpha's rsync is halfway through a file when beta is admitted: the file is not
    finished, and rsync's ``.big.XXXXXX`` is not left in the directory (SIGKILL would
    leave it, to be synced on from there)."""
    cfg, _, dest = gamma
    config = config_file(tmp_path, dest)
    shell = tmp_path / "ssh"  # ssh and sshd's forced command, on this machine
    shell.write_text(
        '#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND="$*" exec '
        f"{sys.executable} -m mosqit_failover.sync.receive --config {config}\n"
    )
    shell.chmod(0o755)
    source = tmp_path / "source"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(4 << 20))
    sender = ["rsync", "-a", "--no-D", "--numeric-ids", "--force", "--delete", "--timeout=30"]
    paths = [f"{source}/", f"gamma:{dest}/"]
    alpha = subprocess.Popen(
        [*sender, "--bwlimit=400", "-e", str(shell), "--rsync-path=mosqit-sync 5", *paths],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not [p for p in dest.iterdir() if p.name.startswith(".big.")]:
            assert time.monotonic() < deadline and alpha.poll() is None, "no transfer seen"
            time.sleep(0.02)
        with admitted.admit(cfg.state_dir, 6, wait=10):
            assert sorted(p.name for p in dest.iterdir()) == []
        _, err = alpha.communicate(timeout=30)
    finally:
        alpha.kill()
        alpha.communicate()
    assert alpha.returncode != 0 and b"already wrote here (6)" in err, err


def test_a_push_whose_receiver_is_killed_ends_with_it(
    gamma: Setup, tmp_path: Path, pushes: list[Push]
) -> None:
    """Killed (the OOM killer, an operator), the receiver takes rsync with it: no push
    goes on unwatched, nor holds a newer sender up (a helper's attack: a frozen sender's
    rsync outlived a 30 s timeout for minutes, its keep-alives going into the buffer)."""
    cfg, _, dest = gamma
    alpha = Push(tmp_path, dest, 5, " --fsync")
    pushes.append(alpha)
    alpha.receiver.kill()
    alpha.receiver.wait()
    with admitted.admit(cfg.state_dir, 6, wait=20):
        assert alpha.rsync_gone()


def test_a_rename_request_holds_nothing_up_while_its_sender_is_silent(
    gamma: Setup, tmp_path: Path
) -> None:
    """An old active that froze while sending its rename pairs: the newer sender goes
    ahead, and the pairs that come after it are refused, none carried out."""
    cfg, _, dest = gamma
    (dest / "old").write_text("alpha's")
    config = config_file(tmp_path, dest)
    env = dict(os.environ, SSH_ORIGINAL_COMMAND=f"mosqit-sync 5 --move {dest}")
    alpha = subprocess.Popen(
        [sys.executable, "-m", "mosqit_failover.sync.receive", "--config", str(config)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert alpha.stdin is not None
        alpha.stdin.write(b"old\0")  # half a pair, then silence
        alpha.stdin.flush()
        deadline = time.monotonic() + 30
        while admitted.admitted(cfg.state_dir) != 5 and time.monotonic() < deadline:
            time.sleep(0.02)  # its admission is done: now it waits for its input
        with admitted.admit(cfg.state_dir, 6, wait=5):
            pass
        out, err = alpha.communicate(b"new\0", timeout=30)
    finally:
        alpha.kill()
        alpha.communicate()
    assert alpha.returncode == receive.REFUSED_EXIT and b"already wrote here (6)" in err
    assert not out and (dest / "old").exists() and not (dest / "new").exists()


def move_request(tmp_path: Path, dest: Path, epoch: int) -> subprocess.Popen[bytes]:
    config = config_file(tmp_path, dest)
    env = dict(os.environ, SSH_ORIGINAL_COMMAND=f"mosqit-sync {epoch} --move {dest}")
    return subprocess.Popen(
        [sys.executable, "-m", "mosqit_failover.sync.receive", "--config", str(config)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_rename_request_whose_node_promoted_meanwhile_moves_nothing(
    gamma: Setup, tmp_path: Path
) -> None:
    """A helper's attack: admitted while a standby, the old active's pairs arrived after
    the node took over, and were carried out in the directory it now serves."""
    cfg, state, dest = gamma
    (dest / "db").write_text("the new active's")
    (dest / "junk").write_text("the old active's")
    alpha = move_request(tmp_path, dest, 5)
    try:
        assert alpha.stdin is not None
        alpha.stdin.write(b"junk\0")
        alpha.stdin.flush()
        deadline = time.monotonic() + 30
        while admitted.admitted(cfg.state_dir) != 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        state.save(9, Role.ACTIVE)
        out, err = alpha.communicate(b"db\0", timeout=30)
    finally:
        alpha.kill()
        alpha.communicate()
    assert alpha.returncode == receive.REFUSED_EXIT and b"this node is ACTIVE" in err, err
    assert not out and (dest / "db").read_text() == "the new active's"


def test_a_rename_request_unread_results_hold_nothing_up(gamma: Setup, tmp_path: Path) -> None:
    """Its results are written once its renames are done and its lock released: a sender
    that froze without reading them keeps no newer sender waiting (a helper's attack)."""
    cfg, _, dest = gamma
    alpha = move_request(tmp_path, dest, 5)
    pairs = b"".join(f"missing-{i}\0new-{i}\0".encode() for i in range(5000))
    try:
        assert alpha.stdin is not None and alpha.stdout is not None
        alpha.stdin.write(pairs)
        alpha.stdin.close()  # then never reads its ~150 kB of results: more than a pipe holds
        ready, _, _ = select.select([alpha.stdout], [], [], 30)
        assert ready  # the results are being written: the renames are done
        assert alpha.poll() is None  # blocked on the full pipe
        with admitted.admit(cfg.state_dir, 6, wait=5):
            pass
        assert alpha.stdout.readline() == b"kept: the source is not here\n"
    finally:
        alpha.kill()
        alpha.wait()
        for pipe in (alpha.stdout, alpha.stderr):
            if pipe is not None:
                pipe.close()


def test_a_chunk_of_a_stream_keeps_a_newer_sender_waiting_and_stops_on_it(
    gamma: Setup,
) -> None:
    """A helper's attack: a chunk of slow records (deep paths) went on for seconds after
    a newer sender was admitted, whose stream wrote meanwhile, then was overwritten."""
    cfg, state, dest = gamma
    root = channel(5, dest, cfg, state)
    guard = Guard(state, root, command_epoch=5)
    guard.admit(5)
    guard.enter_chunk()
    beta: list[admitted.Writing] = []
    thread = threading.Thread(target=lambda: beta.append(admitted.admit(cfg.state_dir, 6)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while admitted.admitted(cfg.state_dir) != 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(CHECK_EVERY)
        with pytest.raises(Refused, match=r"already wrote here \(6\)"):
            guard.during_chunk()
        assert not beta  # waits for the chunk to be left
    finally:
        guard.leave_chunk()
        thread.join()
    assert beta
    beta[0].release()
    guard.close()


def test_a_push_stops_when_the_state_directory_goes(
    gamma: Setup, tmp_path: Path, pushes: list[Push]
) -> None:
    """Removed or moved (a reset by hand, a restore), it takes the record and the locks
    with it: the push is stopped rather than left unwatched beside a newer one."""
    cfg, _, dest = gamma
    alpha = Push(tmp_path, dest, 5)
    pushes.append(alpha)
    cfg.state_dir.rename(tmp_path / "state-before")
    code, err = alpha.ended()
    assert code == receive.REFUSED_EXIT
    assert "state directory was removed or moved" in refusal(err), err


def test_admissions_queued_behind_a_push_are_each_answered_in_time(gamma: Setup) -> None:
    """A helper's attack: each waited its full time in turn (21, 41, 61, 81 s), past the
    sender's own timeout; the wait is the admission's whole wait, the gate's too."""
    cfg, _, _ = gamma
    results: list[BaseException | None] = []

    def newer() -> None:
        try:
            admitted.admit(cfg.state_dir, 6, wait=1.0).release()
            results.append(None)
        except admitted.OlderStillWriting as error:
            results.append(error)

    with admitted.admit(cfg.state_dir, 5):  # a push that does not stop (no receiver)
        threads = [threading.Thread(target=newer) for _ in range(4)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - start
    assert len(results) == 4 and all(isinstance(r, admitted.OlderStillWriting) for r in results)
    assert took < 3.0  # queued in turn it would be 4 s or more


def test_deleting_the_record_does_not_let_a_newer_sender_in_beside_an_older_push(
    gamma: Setup,
) -> None:
    """The refusal tells an operator to delete the record after a reset: the writing lock
    is not on it (a helper's attack)."""
    cfg, _, _ = gamma
    with admitted.admit(cfg.state_dir, 5):
        admitted.record_file(cfg.state_dir).unlink()
        with pytest.raises(admitted.OlderStillWriting):
            admitted.admit(cfg.state_dir, 6, wait=0.2)


def test_a_stream_is_refused_when_the_record_cannot_be_read(gamma: Setup) -> None:
    """A push is refused then (the record cannot be kept); a stream was let through."""
    cfg, state, dest = gamma
    root = channel(6, dest, cfg, state)
    guard = Guard(state, root, command_epoch=6)
    guard.admit(6)
    record = admitted.record_file(cfg.state_dir)
    record.unlink()
    record.mkdir()
    with pytest.raises(Refused, match="cannot read"):
        guard.enter_chunk()
    with pytest.raises(Refused, match="sync-epoch"):
        channel(6, dest, cfg, state)
    guard.close()


def test_the_refusal_reaches_the_sender_as_one_line(
    gamma: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, _, dest = gamma
    config = config_file(tmp_path, dest)
    monkeypatch.setattr(admitted, "DRAIN_WAIT", 0.1)
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", f"mosqit-sync 6 --move {dest}")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with admitted.admit(cfg.state_dir, 5):
        assert receive.main(["--config", str(config)]) == receive.REFUSED_EXIT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "older sender is still writing" in err[0], err


def test_a_stream_admitted_before_a_newer_sender_applies_nothing_more(gamma: Setup) -> None:
    cfg, state, dest = gamma
    root = channel(5, dest, cfg, state)  # alpha's --syncfs request
    guard = Guard(state, root, command_epoch=5)
    guard.admit(5)
    guard.enter_chunk()
    guard.leave_chunk()
    receive.hold_writing(6, state).release()  # beta's push: no catch-up begun yet
    with pytest.raises(Refused, match=r"already wrote here \(6\)"):
        guard.enter_chunk()
    with pytest.raises(Refused, match=r"already wrote here \(6\)"):
        guard.acknowledge()
    guard.close()


def test_a_stream_whose_hello_comes_after_a_newer_sender_is_refused(gamma: Setup) -> None:
    """The attack's interleaving: alpha's request admitted, then beta's, then alpha's Hello."""
    cfg, state, dest = gamma
    root = channel(5, dest, cfg, state)
    channel(6, dest, cfg, state)
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
