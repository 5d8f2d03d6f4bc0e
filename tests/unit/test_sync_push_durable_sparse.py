"""What a push leaves on the receiver: on its disk when a synchronous directory's push
returns, and holes kept (sparse files), through the real rsync and the real forced
command (``sync-receive``, its ssh a script doing what sshd does with it).

1. Durable (suspicion 1 of the catch-up review): after a rejoin the standby acknowledges
   the following writes as durable, so the catch-up that made it equal must be on its
   disk, not only in its page cache. The standby's directory is an ext4 image on a loop
   device (in a private mount namespace); a copy of the image taken the moment the
   catch-up returned is what the disk holds if the power fails then. Mounted (its journal
   replayed), it holds every file of the catch-up, and not the file it deleted. Before
   the fix the copy held none of the new files' data (it waits up to 30 s for the
   kernel's writeback).
2. Sparse (suspicion 2): a sparse file pushed whole, then changed in the middle and
   pushed again (rsync's delta on the old copy), stays sparse on the receiver; written
   through the mount at 10 GiB, it stays sparse on the standby too (the records carry
   only what was written).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover.config import SyncDir
from mosqit_failover.sync import commands
from mosqit_failover.syncfs import remote
from mosqit_failover.syncfs.join import UNDER
from tests.unit.test_sync_receive_hostile import Receiver, _peer, _run, _with_rsh, rx  # noqa: F401
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixtures)

FSYNC = "--fsync"  # rsync's own option (commands.FSYNC)
MiB = 1 << 20
UNSHARE = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c"]


def _catch_up(src: Path, rx: Receiver) -> list[str]:  # noqa: F811
    """The mount's catch-up of a synchronous directory (``remote.catch_up_argv``), from
    ``src`` to the receiver, through the forced command."""
    sync = SyncDir(path="/srv/data", peer_path=str(rx.dest), mode="synchronous", timeout=20)
    argv = _with_rsh(remote.catch_up_argv(sync, _peer(), 5), rx.sshd())
    return [word.replace(UNDER, str(src)) for word in argv]


def test_every_push_keeps_holes_and_a_synchronous_one_asks_for_its_flush() -> None:
    for mode in ("async", "synchronous"):
        sync = SyncDir(path="/srv/data", mode=mode)
        for argv in (commands.full_argv(sync, _peer(), 5), commands.batch_argv(sync, _peer(), 5)):
            assert "-S" in argv, argv
            assert (FSYNC in argv) == (mode == "synchronous"), argv
    catch_up = remote.catch_up_argv(SyncDir(path="/srv/data", mode="synchronous"), _peer(), 5)
    assert "-S" in catch_up and FSYNC in catch_up and "--delete" in catch_up


LOOP = shutil.which("losetup") and shutil.which("mkfs.ext4") and os.path.exists("/dev/loop-control")


@pytest.mark.skipif(
    os.geteuid() != 0 or not LOOP, reason="an ext4 image on a loop device needs root"
)
def test_the_catch_up_is_on_the_standbys_disk_when_it_returns(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    for i in range(300):
        path = src / f"d{i % 10}" / f"f{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i} ".encode() * 400)
    image, copy, check = tmp_path / "disk.img", tmp_path / "power-lost.img", tmp_path / "check"
    check.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    catch_up = _catch_up(src, rx)
    script = (  # the standby's disk holds a file from before, which the catch-up deletes
        f'mount -o loop "$1" "$2" && echo stale > "$2/stale" && sync -f "$2" || exit 99\n'
        f"{shlex.join(catch_up)}\n"
        'code=$?; cp "$1" "$3"; umount "$2"; exit $code\n'  # the disk at that moment
    )
    done = _run([*UNSHARE, script, "sh", str(image), str(rx.dest), str(copy)])
    assert done.returncode == 0, done.stderr
    listing = (
        "import json, os, sys\n"
        "root = sys.argv[1]\n"
        "print(json.dumps({os.path.relpath(os.path.join(d, n), root): "
        "open(os.path.join(d, n), 'rb').read().decode() for d, _, names in os.walk(root) "
        "for n in names if 'lost+found' not in d}))\n"
    )
    mounted = f'mount -o loop "$1" "$2" && {sys.executable} -c "$3" "$2"; umount "$2"'
    seen = _run([*UNSHARE, mounted, "sh", str(copy), str(check), listing])
    assert seen.returncode == 0, seen.stderr
    on_disk = json.loads(seen.stdout)
    wanted = {str(p.relative_to(src)): p.read_text() for p in src.rglob("*") if p.is_file()}
    missing = sorted(name for name in wanted if on_disk.get(name) != wanted[name])
    assert not missing, f"{len(missing)} of {len(wanted)} files not on the disk, e.g. {missing[:3]}"
    assert "stale" not in on_disk  # the deletion is on the disk too


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as out:
        out.write(b"head")
        out.seek(size // 2)
        out.write(b"middle")
        out.truncate(size)


def test_a_sparse_file_stays_sparse_through_a_full_sync_and_a_delta(
    rx: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 256 * MiB
    _sparse(src / "sparse", size)
    assert (src / "sparse").stat().st_blocks * 512 < MiB  # this file system keeps holes
    full = _run(_catch_up(src, rx))
    assert full.returncode == 0, full.stderr
    copy = rx.dest / "sparse"
    assert copy.stat().st_size == size
    assert copy.stat().st_blocks * 512 < MiB, f"{copy.stat().st_blocks * 512} bytes allocated"
    with (src / "sparse").open("r+b") as out:  # changed in place: the delta on the old copy
        out.seek(size // 4)
        out.write(b"quarter")
    sync = SyncDir(path=str(src), peer_path=str(rx.dest), timeout=20)  # the async engine's
    batch = _run(
        _with_rsh(commands.batch_argv(sync, _peer(), 5), rx.sshd()),
        input=commands.files_from(["sparse"]).decode(),
    )
    assert batch.returncode == 0, batch.stderr
    with copy.open("rb") as copied:
        copied.seek(size // 4)
        assert copied.read(7) == b"quarter"
    assert copy.stat().st_blocks * 512 < MiB, f"{copy.stat().st_blocks * 512} bytes allocated"


def test_a_10_gib_sparse_file_written_through_the_mount_stays_sparse_on_the_standby(
    mount: Mount,  # noqa: F811
) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("mounting FUSE in a private mount namespace needs root and /dev/fuse")
    mount.start()
    w = mount.writer()
    w.call("f = open('big', 'wb'); f.write(b'a'); f.seek(10 << 30); f.write(b'z'); f.close()")
    w.call("f = open('grown', 'wb'); f.write(b'b'); f.truncate(10 << 30); f.close()")
    for name, size in (("big", (10 << 30) + 1), ("grown", 10 << 30)):
        copy = (mount.standby / name).stat()
        assert copy.st_size == size and copy.st_blocks * 512 < MiB, (name, copy)
