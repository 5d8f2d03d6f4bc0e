"""An operator's ``umount -l`` of the serving mount (or a disk mounted over it) is noticed.

The agent follows its mount through the process, its status file and a statfs; after a
lazy unmount by hand (an operator tidying up "a stray FUSE mount", a script) while the
service holds a file open there, all three still look fine: the process lives on for
the open descriptors, and the statfs is answered by the plain directory. New opens,
creates and renames of the service reach the plain directory, never replicated, while
close() returns at once (breaker round 2). Now the health check also asks whether our
file system is still the top mount of the directory; if not, the manager says so,
alerts, stops the mount and syncs the directory asynchronously for the epoch, degraded,
so what the service wrote meanwhile is caught up rather than lost in a handover.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.mount_namespace import needs_mounts, run_in_mount_namespace

pytestmark = needs_mounts

SCRIPT = r"""
import asyncio, json, os, subprocess, sys
from pathlib import Path
from mosqit_failover import config as configuration
from mosqit_failover.sync.manager import SyncManager
from tests.unit.loopback_pair import LOOPBACK_PAIR
directory, standby, state, runtime, how = sys.argv[1:6]
text = LOOPBACK_PAIR.format(tmp=os.path.dirname(directory))
text += f'[[sync]]\npath = "{directory}"\nmode = "synchronous"\nssh_port = 1\n'
seen = {"notes": [], "alerts": []}

def sources():
    return [l.split(" - ")[1].split()[1] for l in open("/proc/self/mountinfo")
            if l.split()[4] == directory]

async def main():
    note = lambda text, priority: seen["notes"].append(text)
    manager = SyncManager(configuration.parse(text), "alpha", note, Path(runtime),
                          alert=seen["alerts"].append)
    manager.start(7)
    await manager.mount(7, [])
    seen["before"] = manager.status()["dirs"][0]["state"]
    held = open(os.path.join(directory, "held-open"), "w")  # the service's open file
    if how == "umount":
        subprocess.run(["umount", "-l", directory], check=True)  # the careless operator
    else:
        subprocess.run(["mount", "-t", "tmpfs", "operators-disk", directory], check=True)
    for _ in range(100):  # up to 10 s: two health periods and the stop
        await asyncio.sleep(0.1)
        if any(n for n in seen["notes"] if "no longer on top" in n):
            break
    await asyncio.sleep(0.5)
    seen["status"] = manager.status()["dirs"][0]
    try:
        held.write("x")
        held.flush()
        seen["held"] = "still works"
    except OSError as error:
        seen["held"] = error.strerror
    seen["sources"] = sources()
    await manager.unmount()
    await manager.stop()
    seen["sources_after"] = sources()

asyncio.run(main())
print(json.dumps(seen))
"""


@pytest.mark.parametrize("how", ["umount", "mount-over"])
def test_our_file_system_no_longer_on_top_is_stopped_and_the_directory_asynchronous(
    tmp_path: Path, how: str
) -> None:
    seen = run_in_mount_namespace(tmp_path, SCRIPT, how)
    assert seen["before"].startswith("synchronous"), seen["before"]
    said = [n for n in seen["notes"] if "no longer on top" in n]
    assert len(said) == 1, seen["notes"]
    cause = "umount -l" if how == "umount" else "operators-disk is mounted over it"
    assert cause in said[0] and "synced asynchronously for this epoch" in said[0], said
    assert "switchover" in said[0], said  # the fix
    assert any("no longer on top" in a for a in seen["alerts"]), seen["alerts"]
    status = seen["status"]
    assert status["degraded"] is True and "no longer on top" in status["last_error"], status
    assert status["state"].startswith("asynchronous"), status
    if how == "umount":  # nothing of ours is left on the directory
        assert seen["sources"] == [] == seen["sources_after"], seen
    else:
        # the operator's disk stays mounted on top (the mount's own unmount at its stop
        # unmounted it before: libfuse's is a lazy umount of the path); our ended mount
        # stays hidden below it until the disk is unmounted (docs/sync-mode.md)
        assert seen["sources"] == ["mosqit-syncfs", "operators-disk"], seen
        assert seen["sources_after"] == seen["sources"], seen
