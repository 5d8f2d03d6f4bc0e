"""The standby's applier applies nothing for a sender that may no longer write there:
not after this node promoted (checked before each chunk, not only at a commit), not
after a catch-up began (the receiver's generation, :mod:`..sync.catchup`), not what a
sender that went away left in the pipe, and not at all once its parent (sshd) is gone.

The first two tests are breaker's findings 1 and 3 of the synchronous mode."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosqit_failover.config import SyncDir
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import catchup, commands
from mosqit_failover.sync.receive import REFUSED_EXIT, Refused
from mosqit_failover.syncfs import apply, stream
from mosqit_failover.syncfs.channel import Channel, Replicator
from mosqit_failover.syncfs.mapping import Step
from mosqit_failover.syncfs.records import Commit, Create, Hello, Record, Rename, Unlink, Write
from tests.unit.test_sync_receive_hostile import Receiver, _peer, _run, _with_rsh


def frames(records: list[Record]) -> bytes:
    return b"".join(stream.encode(r) for r in records)


def test_records_after_the_promotion_change_nothing(tmp_path: Path) -> None:
    """A standby that promoted (epoch 6, ACTIVE, its service writing) while the old
    active's records were on their way: none of them is applied, not even before the
    next commit."""
    root = tmp_path / "spool"
    root.mkdir()
    state = StateFile(tmp_path / "state.json")
    state.save(5, Role.STANDBY)
    first = stream.HEADER + frames(
        [Hello(5), Create(b"old.tmp", 0o644, 0, 0), Write(b"old.tmp", 0, b"stale"), Commit(1)]
    )
    late = frames([Unlink(b"mine"), Rename(b"old.tmp", b"live"), Commit(2)])

    class Promoting(io.BytesIO):
        """The stream in two parts; in between this node promotes and its service writes."""

        def __init__(self) -> None:
            super().__init__()
            self.parts = [first, late]

        def read1(self, size: int | None = -1) -> bytes:
            if len(self.parts) == 1:
                state.save(6, Role.ACTIVE)
                (root / "mine").write_text("written by the new active's service")
                (root / "live").write_text("the new active's live file")
            return self.parts.pop(0) if self.parts else b""

    out = io.StringIO()
    args = argparse.Namespace(root=str(root), state=str(state.path))
    assert apply.run(args, Promoting(), out) == REFUSED_EXIT
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["ready 5", "ok 1"]
    assert lines[2].startswith("refused: this node is ACTIVE (epoch 6)"), lines
    assert (root / "mine").read_text() == "written by the new active's service"
    assert (root / "live").read_text() == "the new active's live file"


def applier_process(root: Path, state: StateFile) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "apply", "--root", str(root)]
    return subprocess.Popen(
        [*argv, "--state", str(state.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_stopped_applier_does_not_apply_what_its_gone_sender_left_in_the_pipe(
    tmp_path: Path,
) -> None:
    """SIGSTOP (a frozen standby); the active gives up (ack_timeout, kills its ssh: the
    pipe is closed) and catches the standby up; the applier wakes: the stale write in its
    pipe is not applied over the catch-up's newer data."""
    root = tmp_path / "standby"
    root.mkdir()
    state = StateFile(tmp_path / "state.json")
    state.save(5, Role.STANDBY)
    applier = applier_process(root, state)
    assert applier.stdin is not None and applier.stdout is not None
    try:
        applier.stdin.write(
            stream.HEADER + frames([Hello(5), Create(b"f", 0o644, 0, 0), Commit(1)])
        )
        applier.stdin.flush()
        assert applier.stdout.readline() == b"ready 5\n"
        assert applier.stdout.readline() == b"ok 1\n"
        os.kill(applier.pid, signal.SIGSTOP)
        applier.stdin.write(frames([Write(b"f", 0, b"OLD OLD OLD"), Commit(2)]))
        applier.stdin.flush()
        applier.stdin.close()
        (root / "f").write_bytes(b"new content from the catch-up")
        os.kill(applier.pid, signal.SIGCONT)
        assert applier.wait(20) == REFUSED_EXIT
        said = applier.stdout.read().decode()
    finally:
        if applier.poll() is None:
            applier.kill()
            applier.wait(5)
    assert said.startswith("refused: the sender ended the stream with 1 record(s) not yet ")
    assert (root / "f").read_bytes() == b"new content from the catch-up"


def test_a_stream_applies_nothing_after_an_rsync_catch_up_began(tmp_path: Path) -> None:
    """The real forced command serves a channel; the real rsync (our sender's full sync,
    through the same forced command) catches the directory up meanwhile; the channel's
    next records are refused with why, and the catch-up's data stays."""
    rx = Receiver(tmp_path)
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": f"mosqit-sync 5 --syncfs {rx.dest}"}
    forced = [sys.executable, "-m", "mosqit_failover.cli", "sync-receive", "--config"]
    forced.append(str(rx.config))
    applier = subprocess.Popen(
        forced, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert applier.stdin is not None and applier.stdout is not None
    try:
        applier.stdin.write(
            stream.HEADER
            + frames([Hello(5), Create(b"f", 0o644, 0, 0), Write(b"f", 0, b"v1"), Commit(1)])
        )
        applier.stdin.flush()
        assert applier.stdout.readline() == b"ready 5\n"
        assert applier.stdout.readline() == b"ok 1\n"
        src = tmp_path / "src"
        src.mkdir()
        (src / "f").write_bytes(b"v2 from the catch-up")
        sync = SyncDir(path=str(src), peer_path=str(rx.dest), timeout=20)
        full = _run(_with_rsh(commands.full_argv(sync, _peer(), 5), rx.sshd()))
        assert full.returncode == 0, full.stderr
        applier.stdin.write(frames([Write(b"f", 0, b"OLD"), Commit(2)]))
        applier.stdin.flush()
        line = applier.stdout.readline().decode()
        assert applier.wait(20) == REFUSED_EXIT
    finally:
        if applier.poll() is None:
            applier.kill()
            applier.wait(5)
    assert line.startswith(f"refused: a catch-up of {rx.dest} (rsync from the active) began "), line
    assert "none is applied" in line and line.count("\n") == 1
    assert (rx.dest / "f").read_bytes() == b"v2 from the catch-up"


def test_the_active_sees_the_catch_up_refusal_as_the_channels_reason(tmp_path: Path) -> None:
    root = tmp_path / "standby"
    root.mkdir()
    state = StateFile(tmp_path / "state.json")
    state.save(5, Role.STANDBY)
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "apply", "--root", str(root)]
    channel = Channel("beta", [*argv, "--state", str(state.path)])

    async def scenario() -> None:
        await channel.start(5, 10.0)
        replicator = Replicator([channel], ack_timeout=10.0)
        await replicator.submit(Step((Create(b"f", 0o644, 0, 0),), sync=True))
        assert channel.acked == 1
        catchup.begin(tmp_path, str(root))  # as the rsync receiver does before writing
        await replicator.submit(Step((Write(b"f", 0, b"late"),), sync=True))
        assert not channel.alive
        await replicator.close()

    asyncio.run(scenario())
    assert channel.reason.startswith(f"refused: a catch-up of {root} (rsync from the active)")
    assert (root / "f").read_bytes() == b""


def test_a_catch_up_waits_for_the_chunk_being_applied_and_then_wins(tmp_path: Path) -> None:
    root = str(tmp_path / "spool")
    stream_generation = catchup.Generation(tmp_path, root)
    try:
        stream_generation.hold()  # an applier inside a chunk (stopped there, say)
        started = time.monotonic()
        with pytest.raises(catchup.CatchUpError, match=r"has been applying into .* for 0.3s"):
            catchup.begin(tmp_path, root, wait=0.3)
        assert time.monotonic() - started >= 0.3
        stream_generation.release()
        assert catchup.begin(tmp_path, root) == stream_generation.start + 1
        with pytest.raises(catchup.CatchUpError, match=r"generation 0, now 1"):
            stream_generation.hold()
        assert catchup.begin(tmp_path, root, wait=0) == 2  # the refused hold left nothing held
        assert catchup.Generation(tmp_path, root).start == 2  # a new stream starts from here
    finally:
        stream_generation.close()
    # kept beside the state file, never in the synced directory itself
    assert catchup.generation_file(tmp_path, root).parent == tmp_path
    assert not (tmp_path / "spool").exists()


def test_a_stopped_applier_dies_with_its_parent(tmp_path: Path) -> None:
    """sshd's session ends with the connection the active killed: its applier, stopped or
    not, is killed then (it cannot wake up later with stale records in its pipe)."""
    root = tmp_path / "standby"
    root.mkdir()
    state = StateFile(tmp_path / "state.json")
    state.save(5, Role.STANDBY)
    argv = [sys.executable, "-m", "mosqit_failover.syncfs", "apply", "--root", str(root)]
    argv += ["--state", str(state.path)]
    sshd = subprocess.Popen(  # stands for sshd's session: starts the applier, then waits
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen({argv!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
            "p.stdin.write(bytes.fromhex(sys.argv[1])); p.stdin.flush()\n"
            "p.stdout.readline()\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n",
            (stream.HEADER + frames([Hello(5)])).hex(),
        ],
        stdout=subprocess.PIPE,
    )
    assert sshd.stdout is not None
    pid = int(sshd.stdout.readline())
    try:
        os.kill(pid, signal.SIGSTOP)
        sshd.kill()
        sshd.wait(5)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the stopped applier outlived its parent"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running or stopped (a zombie, waiting for its new parent to reap it, is dead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_the_state_file_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    """The per-chunk check is one stat while nothing changed (the sequential write path)."""

    class Counting(StateFile):
        loads = 0

        def load_full(self) -> tuple[int, Role, int]:
            self.loads += 1
            return super().load_full()

    state = Counting(tmp_path / "state.json")
    state.save(5, Role.STANDBY)
    guard = apply.Guard(state, str(tmp_path / "spool"))
    guard.admit(5)
    for _ in range(100):
        guard.enter_chunk()
        guard.leave_chunk()
    assert state.loads == 1
    state.save(5, Role.STANDBY)  # saved again (a new file): read again, still admitted
    guard.enter_chunk()
    guard.leave_chunk()
    assert state.loads == 2
    state.save(7, Role.STANDBY)
    with pytest.raises(Refused, match="the sender's epoch 5 is older than this node's 7"):
        guard.enter_chunk()
    guard.close()
