"""One agent per node (effects/agent_lock.py): a second agent started by hand beside the
unit's bound the peer port again, fenced, released the VIP and deleted the running
agent's socket (a helper's finding). Real processes hold the lock here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosqit_failover.effects.agent_lock import AgentLock, AgentLockError

HOLD = """
import sys, time
from mosqit_failover.effects.agent_lock import AgentLock
AgentLock(sys.argv[1]).take()
print("held", flush=True)
if sys.argv[2] == "child":  # a service the agent started, outliving it
    import subprocess
    print(subprocess.Popen(["sleep", "30"]).pid, flush=True)
time.sleep(30)
"""


def holder(state: Path, child: bool = False) -> tuple[subprocess.Popen[str], int]:
    """A process holding the lock of `state`, and the pid of its child (0: none)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state), "child" if child else "-"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc, int(proc.stdout.readline()) if child else 0


def test_a_second_agent_is_refused_naming_the_first_one_s_pid(tmp_path: Path) -> None:
    first, _ = holder(tmp_path)
    (tmp_path / "agent.pid").write_text(f"{first.pid}\n")
    try:
        with pytest.raises(AgentLockError) as caught:
            AgentLock(tmp_path).take()
        assert str(caught.value).startswith(
            f"another mosqit-failover agent runs on this node (pid {first.pid}): one agent per node"
        )
    finally:
        first.kill()
        first.wait()


def test_the_lock_goes_with_a_killed_agent_even_when_its_services_live_on(
    tmp_path: Path,
) -> None:
    first, child = holder(tmp_path, child=True)
    try:
        first.send_signal(signal.SIGKILL)
        first.wait()
        lock = AgentLock(tmp_path)
        deadline = time.monotonic() + 5
        while True:  # the kernel drops it at the process's end, the child never had it
            try:
                lock.take()
                break
            except AgentLockError:
                assert time.monotonic() < deadline, "the lock outlived its agent"
                time.sleep(0.05)
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_taken_released_and_taken_again_in_one_process(tmp_path: Path) -> None:
    lock = AgentLock(tmp_path / "new")
    lock.take()
    assert (tmp_path / "new").is_dir()
    lock.release()
    AgentLock(tmp_path / "new").take()


def test_a_state_directory_that_cannot_hold_the_lock_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    with pytest.raises(AgentLockError) as caught:
        AgentLock(tmp_path / "file").take()
    assert str(caught.value).startswith(f"cannot open the state directory {tmp_path}/file (")
    assert "must be a writable directory" in str(caught.value)
    assert os.listdir(tmp_path) == ["file"]


def test_emptying_the_state_directory_does_not_let_a_second_agent_in(tmp_path: Path) -> None:
    """A lock file deleted by hand let a second agent in beside the first, which then
    released the active's VIP and services (a helper's finding)."""
    first, _ = holder(tmp_path)
    try:
        for leftover in tmp_path.iterdir():
            leftover.unlink()
        with pytest.raises(AgentLockError, match="another mosqit-failover agent runs"):
            AgentLock(tmp_path).take()
    finally:
        first.kill()
        first.wait()
