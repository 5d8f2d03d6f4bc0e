"""A synchronous directory whose mount cannot start does not fail the promotion.

A directory that is a mount point of its own file system (a data disk; a tmpfs here) is
refused by the mount, on every node alike. The promotion's StartSync used to fail with
that line, the core rolled the promotion back, and the nodes took turns promoting and
rolling back for ever: no active node (breaker's finding 7, in the lab). Now the
directory is synced asynchronously for the epoch (degraded, alerted, one line naming the
fix) and the promotion goes on; the operator's file system stays mounted.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.mount_namespace import OPERATORS_DISK, needs_mounts, run_in_mount_namespace

pytestmark = needs_mounts

PROMOTION = (
    OPERATORS_DISK
    + r"""
from mosqit_failover import config as configuration
from mosqit_failover.sync.manager import SyncManager
from tests.unit.loopback_pair import LOOPBACK_PAIR
text = LOOPBACK_PAIR.format(tmp=os.path.dirname(directory))
text += f'[[sync]]\npath = "{directory}"\nmode = "synchronous"\nssh_port = 1\n'
seen = {"notes": [], "alerts": []}
async def main():
    note = lambda text, priority: seen["notes"].append(text)
    manager = SyncManager(configuration.parse(text), "alpha", note, Path(runtime),
                          alert=seen["alerts"].append)
    manager.start(7)
    try:
        await manager.mount(7, [])
        seen["promoted"] = True
    except Exception as error:
        seen["promoted"] = f"{type(error).__name__}: {error}"
    seen["status"] = manager.status()["dirs"]
    seen["sources"] = [l.split(" - ")[1].split()[1] for l in open("/proc/self/mountinfo")
                       if l.split()[4] == directory]
    seen["listing"] = sorted(os.listdir(directory))
    await manager.unmount()
    await manager.stop()
asyncio.run(main())
print(json.dumps(seen))
"""
)


def test_a_directory_that_cannot_be_mounted_is_asynchronous_and_the_promotion_goes_on(
    tmp_path: Path,
) -> None:
    seen = run_in_mount_namespace(tmp_path, PROMOTION)
    assert seen["promoted"] is True, seen
    said = [n for n in seen["notes"] if "not synchronous in epoch 7" in n]
    assert len(said) == 1 and "already a mount point" in said[0], seen["notes"]
    assert "the promotion goes on" in said[0] and "synced asynchronously" in said[0], said
    assert any("synchronous mount failed" in a for a in seen["alerts"]), seen["alerts"]
    (status,) = seen["status"]
    assert status["degraded"] is True and "already a mount point" in status["last_error"]
    assert status["state"].startswith("asynchronous"), status
    assert seen["sources"] == ["operators-disk"], seen  # the operator's disk, untouched
    assert seen["listing"] == ["precious"], seen
