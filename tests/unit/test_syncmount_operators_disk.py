"""A synchronous directory that is the operator's own mount point (its own disk or LV).

The agent's lazy unmount (of a dead or leftover synchronous mount) must only ever
detach our own file system: an unconditional ``umount -l DIR`` once detached the
operator's disk and the mount then went over the empty directory underneath. Runs in a
private mount namespace (``unshare -m``); a tmpfs stands for the operator's disk.
"""

from __future__ import annotations

from pathlib import Path

from mosqit_failover.syncfs.mountinfo import top_source
from tests.unit.mount_namespace import OPERATORS_DISK, needs_mounts, run_in_mount_namespace

AGENT = (
    OPERATORS_DISK
    + r"""
from mosqit_failover.config import SyncDir
from mosqit_failover.sync.syncmount import MountError, SyncMount
sync = SyncDir(directory, mode="synchronous", ack_timeout=5.0)
seen = {"notes": []}
channel = [sys.executable, "-m", "mosqit_failover.syncfs", "apply", "--root", standby,
           "--state", state]
def fstypes():
    return [l.split(" - ")[1].split()[0] for l in open("/proc/self/mountinfo")
            if l.split()[4] == directory]
async def main():
    m = SyncMount(sync, Path(runtime), lambda t, p: seen["notes"].append(t), lambda m: None,
                  lambda m, d: None)
    try:
        await m.start(7, {"beta": channel})
        seen["started"] = True
    except MountError as error:
        seen["error"] = str(error)
    seen["mounts_after_start"] = fstypes()
    seen["listing_after_start"] = sorted(os.listdir(directory))
    if seen.get("started"):
        await m.stop()
    seen["mounts_after_stop"] = fstypes()
    seen["listing_after_stop"] = sorted(os.listdir(directory))
asyncio.run(main())
print(json.dumps(seen))
"""
)


@needs_mounts
def test_starting_the_mount_does_not_unmount_the_operators_file_system(tmp_path: Path) -> None:
    seen = run_in_mount_namespace(tmp_path, AGENT)
    # the operator's tmpfs must still be there after start (refused or mounted over it)
    assert "tmpfs" in seen["mounts_after_start"], seen
    assert "precious" in seen["listing_after_start"], seen


@needs_mounts
def test_stopping_the_mount_leaves_the_operators_file_system_mounted(tmp_path: Path) -> None:
    seen = run_in_mount_namespace(tmp_path, AGENT)
    assert seen["mounts_after_stop"] == ["tmpfs"], seen
    assert seen["listing_after_stop"] == ["precious"], seen


def test_the_top_mount_is_the_last_one_listed_on_that_path(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "36 25 8:1 / /srv/my\\040spool rw,relatime shared:1 - ext4 /dev/vdb rw\n"
        "40 36 0:50 / /srv/my\\040spool rw,nosuid - fuse mosqit-syncfs rw,user_id=0\n"
        "41 25 0:51 / /srv/other rw - tmpfs tmpfs rw\n"
    )
    assert top_source("/srv/my spool", str(mountinfo)) == "mosqit-syncfs"
    assert top_source("/srv/other", str(mountinfo)) == "tmpfs"
    assert top_source("/srv", str(mountinfo)) is None
    assert top_source("/srv/other", str(tmp_path / "absent")) is None
