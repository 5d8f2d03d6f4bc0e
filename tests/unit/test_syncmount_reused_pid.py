"""(Found by a breaker.) the leftover cleanup kills a process its stale status file names.

What breaks: ``SyncMount.left_running``/``end_leftover`` (``SyncManager.end_leftovers``, at
a demotion and at a start holding nothing) take the ``pid`` of a status file in the
runtime directory and SIGTERM (then SIGKILL) it when its command line merely contains
``mosqit_failover.syncfs``. They do not look at the file's ``state`` (a mount that
stopped cleanly leaves ``unmounted`` with its old pid, and a directory that left the
config keeps its status file for ever: nothing removes it), nor whether the process is a
mount *of that directory* (``mount DIR`` in its command line), nor whether it started
after the status file was written. Pids are reused.

How: a real mount of another directory serves (the operator's own ``python -m
mosqit_failover.syncfs mount``, the bench, or, on a host whose nodes share a pid
namespace as the lab's do, another node's mount); a status file of a directory that left
the config says ``unmounted`` with that pid (its own mount ended long ago; the pid was
reused). The cleanup of that directory runs.

Why it matters: the agent SIGTERMs a serving synchronous file system that is not the one
the file names: its service's files fail with ENOTCONN, its standby stops being in sync.
"Only our own mounts" (docs/sync-mode.md) does not hold.

Expected: a status file whose state is ``unmounted`` (or ``failed``) names no process to
end; a pid is ended only if its command line is the mount of that very directory (better:
its start time is not after the status file's), otherwise one line and nothing killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from mosqit_failover.config import SyncDir
from mosqit_failover.sync.syncmount import SyncMount
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)


def test_a_stale_status_file_does_not_end_another_directorys_mount(mount: Mount) -> None:  # noqa: F811
    mount.start()  # a mount of another directory, serving
    victim = mount.pid
    runtime = mount.tmp / "run"
    runtime.mkdir()
    gone = mount.tmp / "left-the-config"
    gone.mkdir()
    lines: list[str] = []
    leftover = SyncMount(SyncDir(str(gone)), runtime, lambda line, priority: lines.append(line))
    stale = {"directory": str(gone), "state": "unmounted", "pid": victim, "epoch": 3}
    leftover.status_path.write_text(json.dumps(stale))
    if leftover.left_running():
        asyncio.run(leftover.end_leftover())
    time.sleep(0.5)
    assert os.waitpid(victim, os.WNOHANG) == (0, 0), (
        f"the mount of {mount.active} (pid {victim}) was ended through the stale status file "
        f"of {gone}: {lines}"
    )
