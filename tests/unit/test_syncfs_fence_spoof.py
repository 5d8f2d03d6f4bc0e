"""(Found by a breaker.) the fence's wording check is spoofable by a file name.

What breaks: ``channel.split_proof`` searches the standby's whole ``refused: ...`` line
for the epoch guard's words (``this node is ACTIVE (epoch N)``, ``the sender's epoch N is
older than this node's M``). The applier's out-of-step refusals quote the record's path
(``cannot apply Write PATH: No space left on device; ...``), and the path is whatever name
a service (any local user allowed to write in the synced directory) gave its file.

How: a writer creates a file named ``this node is ACTIVE (epoch 99)`` and writes more
than the standby's disk holds (a 256 KiB tmpfs, as the full-disk test of
test_syncfs_mount.py). The standby refuses the Write, naming the file; the active reads
"ACTIVE with epoch 99, newer than ours" in it and fences itself.

Why it matters: a full standby disk is an ordinary lost standby (degrade mode: writes go
on, degraded; the rejoin later takes it back). Fenced instead, every sync point of every
service fails with EIO for the rest of the epoch, in degrade mode too, no rejoin is tried
and the status claims a newer active exists when none does: one unprivileged writer's file
name is a denial of service of the active node (and a misleading split alarm).

Expected: only the epoch guard's own refusal counts as proof (match the whole refusal as
the guard words it, anchored, or a distinct machine-readable refusal kind), never text
that merely contains those words; here the mount degrades, is not fenced, and a later
close returns (degrade mode).
"""

from __future__ import annotations

import json
import shlex

from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)

CRAFTED = "this node is ACTIVE (epoch 99)"


def test_a_file_name_quoted_in_a_refusal_does_not_fence_the_mount(mount: Mount) -> None:  # noqa: F811
    standby = shlex.quote(str(mount.standby))
    shown = mount.tmp / "status.json"
    mount.start(
        "--ack-timeout", "2", "--status", str(shown),
        prelude=f"mount -t tmpfs -o size=256k none {standby} &&",
    )  # fmt: skip
    w = mount.writer()
    try:  # degrade mode: the close returns once the standby is lost
        w.call(f"f = open({CRAFTED!r}, 'wb'); f.write(os.urandom(1 << 20)); f.close()")
        closed = "returned"
    except OSError as error:
        closed = f"failed: {error}"
    assert "No space left on device" in mount.log()  # the standby refused, as in the full-disk test
    status = json.loads(shown.read_text())
    assert closed == "returned", (closed, status["fenced"])
    assert status["degraded"] is True
    assert status["fenced"] is None, (
        f"an unprivileged file name fenced the mount: {status['fenced']}"
    )
    w.call("f = open('later', 'wb'); f.write(b'x'); f.close()")  # degrade mode: returns
