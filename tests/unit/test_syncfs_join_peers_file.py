"""(Found by a breaker.) the mount trusts whatever is at its ``--peers`` path.

The peers file carries command lines the mount (root, the FUSE server of the service's
directory) runs: each standby's catch-up and channel. ``join.Joiner._new_requests`` opens
the path with a plain ``open()`` (following a symlink, blocking on a FIFO) and reads all of
it, in the file system's own event loop, with no check of its type, owner or mode.

1. A peers file writable by others (or owned by another user) is obeyed: its ``catch_up``
   runs as root. Why it matters: anyone who can write that one file (a careless
   ``chmod``, a runtime directory on a shared path, a file left by another tool) gets
   root command execution on the active node. Expected: like the agent's other trusted
   files, refuse a peers file that is not a regular file owned by root and unwritable by
   group and others, one line naming the fix, and run nothing from it.

2. A FIFO (or any file whose open/read blocks: a symlink to a device, a hung network
   file) at the peers path blocks the mount's event loop: ``open()`` waits for a writer,
   and every FUSE request of the services waits with it (reads, stats, closes: the
   whole directory hangs), and the agent's hang watchdog then SIGKILLs the mount and
   hands over. Expected: open with ``O_NOFOLLOW | O_NONBLOCK``, refuse anything but a
   regular file (and bound its size), so the file system keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time

from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import start_joinable

NOBODY = 65534


def test_a_peers_file_others_may_write_is_not_obeyed(mount: Mount) -> None:  # noqa: F811
    peers, _ = start_joinable(mount)
    mount.kill_standby()
    w = mount.writer()
    w.call("f = open('one', 'wb'); f.write(b'1'); f.close()")  # degraded: a join is wanted
    owned = mount.tmp / "ran-as-root"
    entry = {
        "name": "standby",
        "request": 1,
        "channel": ["true"],
        "catch_up": ["sh", "-c", f"id -u > {shlex.quote(str(owned))}; exit 1"],
    }
    peers.write_text(json.dumps({"epoch": mount.epoch, "peers": [entry]}))
    os.chown(peers, NOBODY, NOBODY)
    peers.chmod(0o666)
    time.sleep(2.5)  # five looks at the file
    assert not owned.exists(), (
        f"a peers file owned by uid {NOBODY}, mode 0666, ran its catch-up as uid "
        f"{owned.read_text().strip()} (log: {mount.log()[-300:]})"
    )


def test_a_fifo_at_the_peers_path_does_not_hang_the_file_system(mount: Mount) -> None:  # noqa: F811
    peers = mount.tmp / "peers.json"
    mount.start("--peers", str(peers))
    w = mount.writer()
    w.call("open('before', 'wb').write(b'1')")
    os.mkfifo(peers)
    time.sleep(1.5)  # the mount has looked at it (every 0.5 s)
    try:
        w.call("result = os.listdir('.')", timeout=5)
    finally:  # let a blocked open() go, so the fixture can stop the mount (ENXIO: none)
        with contextlib.suppress(OSError):
            os.close(os.open(peers, os.O_WRONLY | os.O_NONBLOCK))
