"""A restarted agent that demotes ends the synchronous mount the previous agent left.

The mount outlives the agent on purpose (its own service; ``SyncManager.stop`` only
detaches), so that a restarted agent of the same epoch adopts it. When the peer promoted
meanwhile, the restarted agent demotes instead: its StopSync (``SyncManager.unmount``)
used to stop only the mounts it started itself, and the old epoch's file system stayed
over the directory of a now-STANDBY node, where the new active's channel and rsync write
(breaker's finding 4). Now ``unmount`` (and an agent that starts holding nothing) ends
every mount of ours its config or status files name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mosqit_failover.config import SyncDir
from mosqit_failover.sync.syncmount import SyncMount, recorded_directories
from tests.unit.mount_namespace import needs_mounts, run_in_mount_namespace

AGENTS = r"""
import asyncio, json, os, subprocess, sys
from pathlib import Path
from mosqit_failover import config as configuration
from mosqit_failover.sync.manager import SyncManager
from mosqit_failover.sync.syncmount import SyncMount
from tests.unit.loopback_pair import LOOPBACK_PAIR
directory, standby, state, runtime, case = sys.argv[1:6]
tmp = os.path.dirname(directory)
operators = os.path.join(tmp, "operators")  # a disk of the operator's, synced async
os.mkdir(operators)
subprocess.run(["mount", "-t", "tmpfs", "operators-disk", operators], check=True)
def config(synced):
    text = LOOPBACK_PAIR.format(tmp=tmp) + f'[[sync]]\npath = "{operators}"\n'
    if synced:
        text += f'[[sync]]\npath = "{directory}"\nmode = "synchronous"\nssh_port = 1\n'
    return configuration.parse(text)
cfg = config(True)
sync = next(s for s in cfg.sync if s.path == directory)
channel = [sys.executable, "-m", "mosqit_failover.syncfs", "apply", "--root", standby,
           "--state", state]
seen = {"notes": []}
def alive(pid):  # an ended orphan may stay a zombie until PID 1 reaps it
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def mounted(where):
    return [l.split(" - ")[1].split()[1] for l in open("/proc/self/mountinfo")
            if l.split()[4] == where]
async def main():
    first = SyncMount(sync, Path(runtime), lambda t, p: None)
    await first.start(7, {"beta": channel})
    seen["pid"] = first.pid
    await first.detach()  # the agent was SIGKILLed: its mount serves on
    note = lambda t, p: seen["notes"].append(t)
    if case == "demotes":  # the restarted agent: the peer promoted meanwhile (StopSync)
        second = SyncManager(cfg, "alpha", note, Path(runtime))
        await second.unmount()
        await second.stop()
    else:  # restarted holding nothing, the directory gone from its config meanwhile
        second = SyncManager(config(False), "alpha", note, Path(runtime))
        await second.end_leftovers()
    seen["mounted_after"] = mounted(directory)
    seen["operators_after"] = mounted(operators)
    seen["pid_alive"] = alive(seen["pid"])
    if seen["pid_alive"]:
        os.kill(seen["pid"], 9)
asyncio.run(main())
print(json.dumps(seen))
"""


@needs_mounts
@pytest.mark.parametrize("case", ["demotes", "starts-holding-nothing"])
def test_a_restarted_agent_ends_the_old_mount(tmp_path: Path, case: str) -> None:
    seen = run_in_mount_namespace(tmp_path, AGENTS, case)
    assert seen["mounted_after"] == [], seen
    assert not seen["pid_alive"], seen
    assert seen["operators_after"] == ["operators-disk"], seen  # never the operator's mount
    assert any("stopping a synchronous mount of epoch 7" in n for n in seen["notes"]), seen


def test_the_directories_of_our_mounts_are_read_from_their_status_files_only(
    tmp_path: Path,
) -> None:
    mount = SyncMount(SyncDir("/srv/spool", mode="synchronous"), tmp_path, lambda t, p: None)
    mount.status_path.write_text('{"directory": "/srv/spool", "state": "up", "pid": 1}')
    mount.peers_path.write_text('[{"name": "beta", "directory": "/not/a/status"}]')
    (tmp_path / "syncfs-000000000000.json").write_text("[1, 2]")  # not ours: ignored
    (tmp_path / "syncfs-111111111111.json").write_text("{half")
    assert recorded_directories(tmp_path) == {"/srv/spool"}
