"""The agent's side of the synchronous mount (sync/syncmount.py), with the real mount
process and the real applier as the standby.

The agent's part runs in a process of its own in a private mount namespace (``unshare
-m --propagation private``), so nothing is mounted in the host's namespace; it prints one
JSON line of what it saw, and the test checks it and the directories from outside.
Covered: start (status up, a change on the standby once its close returned), stop
(unmounted, the data in place), a mount that dies unasked (SIGKILL: noticed, unmounted
lazily, the plain directory back with every acknowledged change, on_exit told), a mount
that hangs (SIGSTOP: killed after hang_after, then the same), adoption
by a second agent of a mount of its epoch, a mount that cannot start (its own line).

Needs root and /dev/fuse (skipped without them), as tests/unit/test_syncfs_mount.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
    reason="mounting FUSE in a private mount namespace needs root and /dev/fuse",
)

AGENT = r"""
import asyncio, json, os, signal, sys, time
from pathlib import Path
from mosqit_failover.config import SyncDir
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync.syncmount import MountError, SyncMount

directory, standby, state, runtime, case = sys.argv[1:6]
sync = SyncDir(directory, mode="synchronous", ack_timeout=5.0)
seen = {"notes": [], "exits": [], "changes": 0}
channel = [sys.executable, "-m", "mosqit_failover.syncfs", "apply", "--root", standby,
           "--state", state]

def note(text, priority):
    seen["notes"].append(text)

def mounted():
    return any(l.split()[4] == directory for l in open("/proc/self/mountinfo"))

async def main():
    loop = asyncio.get_running_loop()
    mount = SyncMount(sync, Path(runtime), note, lambda m: None,
                      lambda m, detail: seen["exits"].append(detail))
    if case == "bad":
        try:
            await mount.start(7, {"beta": channel})
        except MountError as error:
            seen["error"] = str(error)
        return
    if case == "rejoin":  # beta is still the old active: it refuses the channel
        StateFile(Path(state)).save(7, Role.ACTIVE)
    await mount.start(7, {"beta": channel})
    seen["up"], seen["pid"], seen["mounted"] = mount.up, mount.pid, mounted()
    if case == "rejoin":
        seen["live_before"] = sorted(mount.live_channels())
        with open(os.path.join(directory, "local"), "w") as out:
            out.write("degraded: here only")
        StateFile(Path(state)).save(7, Role.STANDBY)  # back, and caught up (by the rsync)
        catch_up = ["rsync", "-a", "--delete", "{under}/", standby + "/"]
        request = mount.request_join("beta", channel, catch_up)
        for _ in range(600):
            if (answer := mount.join_result("beta", request)) is not None:
                break
            await asyncio.sleep(0.05)
        seen["answer"], seen["degraded"] = answer, mount.degraded
        seen["status"] = mount.status()
    seen["live"] = sorted(mount.live_channels())
    with open(os.path.join(directory, "acked"), "w") as out:
        out.write("written through the mount")
    acked = Path(standby, "acked")
    seen["on_standby"] = acked.read_text() if acked.exists() else None
    if seen["on_standby"] is None:  # why: the mount's view (read every 0.5 s) says
        await asyncio.sleep(1.0)
        seen["status_after_write"] = mount.status()
    if case in ("kill", "hang"):
        if case == "hang":  # stopped, not dead: its callers would wait for ever
            mount.hang_after = 1.0
            os.kill(mount.pid, signal.SIGSTOP)
        else:
            os.kill(mount.pid, signal.SIGKILL)
        for _ in range(1200):  # a loaded machine (the suite runs on 2 workers) is slow
            if seen["exits"]:
                break
            await asyncio.sleep(0.05)
        seen["mounted_after"] = mounted()
        if not seen["exits"]:  # a listing would wait on the stopped process for ever
            return
        seen["plain"] = sorted(os.listdir(directory))
    elif case == "adopt":
        await mount.detach()  # the agent exits, the mount serves on
        second = SyncMount(sync, Path(runtime), note)
        seen["adoptable"] = second.adoptable(7)
        seen["adoptable_other_epoch"] = second.adoptable(8)
        await second.start(7, {})
        seen["adopted_pid"] = second.pid
        await second.stop()
        seen["mounted_after"] = mounted()
    else:
        await mount.stop()
        seen["mounted_after"] = mounted()
        seen["plain"] = sorted(os.listdir(directory))

asyncio.run(main())
print(json.dumps(seen))
"""


def run_agent(tmp_path: Path, case: str) -> dict[str, Any]:
    directory, standby, runtime = tmp_path / "data", tmp_path / "standby", tmp_path / "run"
    for path in (directory, standby, runtime):
        path.mkdir()
    (directory / "old").write_text("there before")
    state = StateFile(tmp_path / "state.json")
    state.save(7, Role.STANDBY)
    if case == "bad":
        (directory / "old").unlink()
        directory.rmdir()
        directory.write_text("a file, not a directory")
    argv = ["unshare", "-m", "--propagation", "private", "--", sys.executable, "-c", AGENT]
    argv += [str(directory), str(standby), str(state.path), str(runtime), case]
    # into files, not pipes: a mount process left running (the case failed half-way)
    # inherits them, and a pipe would hide the traceback until it ends
    out_path, err_path = tmp_path / "agent.out", tmp_path / "agent.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        agent = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
    try:
        code = agent.wait(timeout=90)
    finally:
        agent.kill()
        end_leftovers(str(tmp_path))
    stderr = err_path.read_text()
    assert code == 0 and "Traceback" not in stderr, stderr
    seen: dict[str, Any] = json.loads(out_path.read_text().splitlines()[-1])
    return seen


def end_leftovers(under: str) -> None:
    """SIGKILL every process whose command line names ``under`` (a mount process or an
    applier a failed case left): the next test, and the host, are not to inherit it."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(word.startswith(under.encode()) for word in words):
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


def test_a_mount_comes_up_replicates_and_stops_leaving_the_data_in_place(
    tmp_path: Path,
) -> None:
    seen = run_agent(tmp_path, "stop")
    assert seen["up"] and seen["mounted"] and seen["live"] == ["beta"], seen
    assert seen["on_standby"] == "written through the mount", seen  # its close had returned
    assert not seen["mounted_after"] and seen["plain"] == ["acked", "old"]
    assert not seen["exits"], seen  # asked to stop: no death reported
    assert (tmp_path / "data" / "acked").read_text() == "written through the mount"


def replicated_or_degraded(seen: dict[str, Any]) -> bool:
    """The write before the kill reached the standby, or the mount had let the standby
    go (the ack_timeout of 5 s passed, or the channel did not start: a loaded machine),
    which its status says. Not the subject of the tests that kill or stop the mount."""
    if seen["on_standby"] == "written through the mount":
        return True
    return bool(seen.get("status_after_write", {}).get("degraded"))


def test_a_mount_that_dies_is_unmounted_lazily_and_reported(tmp_path: Path) -> None:
    seen = run_agent(tmp_path, "kill")
    assert replicated_or_degraded(seen), seen
    assert seen["exits"] == [f"pid {seen['pid']} ended unasked (killed or crashed)"], seen
    assert not seen["mounted_after"], seen  # no ENOTCONN left for the service
    assert seen["plain"] == ["acked", "old"]  # the plain directory, every change in place
    assert any("unmounted lazily (umount -l)" in line for line in seen["notes"]), seen


def test_a_hung_mount_is_killed_then_handled_as_a_dead_one(tmp_path: Path) -> None:
    seen = run_agent(tmp_path, "hang")
    assert replicated_or_degraded(seen), seen
    assert seen["exits"] == [f"pid {seen['pid']} ended unasked (killed or crashed)"], seen
    assert any("answered no health probe (statfs) for" in line for line in seen["notes"]), seen
    assert not seen["mounted_after"] and seen["plain"] == ["acked", "old"], seen


def test_a_second_agent_adopts_the_mount_of_its_epoch(tmp_path: Path) -> None:
    seen = run_agent(tmp_path, "adopt")
    assert seen["adoptable"] and not seen["adoptable_other_epoch"], seen
    assert seen["adopted_pid"] == seen["pid"]
    assert any("adopted the synchronous mount of epoch 7" in line for line in seen["notes"])
    assert not seen["mounted_after"]


def test_a_mount_that_cannot_start_fails_with_its_own_line(tmp_path: Path) -> None:
    seen = run_agent(tmp_path, "bad")
    assert seen["error"] == (
        f"{tmp_path / 'data'} is not a directory: create it (or fix the [[sync]] path)"
    ), seen


def test_a_standby_back_is_taken_into_the_running_mount(tmp_path: Path) -> None:
    seen = run_agent(tmp_path, "rejoin")
    assert seen["up"] and seen["live_before"] == [], seen
    assert seen["answer"].startswith("joined: caught up in"), seen
    assert seen["live"] == ["beta"] and seen["degraded"] is False, seen
    assert seen["status"]["fenced"] is None and seen["status"]["joins"]["beta"], seen
    # the change made while degraded came with the catch-up, the next through the channel
    assert (tmp_path / "standby" / "local").read_text() == "degraded: here only"
    assert seen["on_standby"] == "written through the mount", seen
