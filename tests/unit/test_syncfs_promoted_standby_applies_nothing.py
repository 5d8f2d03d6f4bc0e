"""(A breaker's case, held by the applier's guards.)
a standby that promoted still *applies* the old active's records; only the
commit after them is refused.

What breaks: the applier (``apply.serve``) checks the epoch guard at the stream's hello
and then only when it acknowledges (``guard(epoch)`` after ``applier.commit()``, once per
read): every record of a read is applied to the directory first. Plain ``write()``s send
no commit at all. Nothing ends the channel's receiving process when the standby
promotes. So once the standby has promoted (its state file ACTIVE with a newer epoch,
its services now writing into that directory), the old active's stream keeps changing
the new active's live directory: a Write lands in the new service's file; an Unlink (a
sync point: its commit follows it) removes the file *before* the commit is refused.

How: the real mount and applier; files replicated; the standby's state becomes ACTIVE
epoch 6 (it promoted) and its service writes ``queue`` and ``log`` there; then the old
active (not demoted yet: frozen and thawed, or cut off on the heartbeat networks only)
writes into ``log`` without closing it and unlinks ``queue``.

Why it matters: the split-brain window is exactly when this happens (the lab's "active
frozen whole" case: after the thaw its writer and services go on until its agent hears
the newer active and stops them). The old active's unacknowledged changes are not
merely lost (acceptable) but overwrite and delete the new active's data under its
running service: a file the new active accepted is gone, or carries the old node's
bytes. docs/sync-mode.md says such a standby "acknowledges nothing more", which is true
and not enough.

Expected: a node that is ACTIVE (or of a newer epoch) applies nothing: check the guard
before applying each read's records (it is one small file read), and end the channel's
receivers when the node promotes; here ``queue`` survives with the new active's bytes and
``log`` keeps the new active's bytes, while the old active's unlink fails with EIO.
"""

from __future__ import annotations

import errno
import time

import pytest

from mosqit_failover.events import Role
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)


def test_a_promoted_standby_applies_nothing_more_from_the_old_active(mount: Mount) -> None:  # noqa: F811
    mount.start("--ack-timeout", "2")
    w = mount.writer()
    w.call("f = open('queue', 'wb'); f.write(b'old'); f.close()")
    w.call("f = open('log', 'wb'); f.write(b'old'); f.close()")
    mount.state.save(6, Role.ACTIVE)  # the standby promoted; its service now writes here
    (mount.standby / "queue").write_bytes(b"accepted by the new active")
    (mount.standby / "log").write_bytes(b"accepted by the new active")
    w.call("f = open('log', 'r+b'); f.write(b'OLD ACTIVE'); f.flush()")  # no close yet
    time.sleep(0.5)
    with pytest.raises(OSError) as caught:
        w.call("os.unlink('queue')")
    assert caught.value.errno == errno.EIO  # fenced: the refusal of the commit
    log = (mount.standby / "log").read_bytes()
    problems = [] if log == b"accepted by the new active" else [f"log on the new active: {log!r}"]
    if not (mount.standby / "queue").exists():
        problems.append("the old active's unlink removed queue on the new active")
    assert not problems, problems
