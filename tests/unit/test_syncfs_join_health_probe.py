"""(Found by a breaker.) A rejoin's freeze does not read as a hung mount: the agent's
health probe (``SyncMount._lookup``) is answered while a change held by the freeze keeps
the kernel's lock on the mount's root (a create there), so a catch-up longer than the
hang threshold does not make the agent SIGKILL a healthy mount and hand over. (The probe
was a lookup in the root, which waited for the whole freeze.)
"""

from __future__ import annotations

import time

from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import ask_to_join, start_joinable, wait_for

ONE_CREATE = """
import threading
threading.Thread(target=lambda: open('held', 'wb').close(), daemon=True).start()
"""


def test_the_health_probe_is_answered_during_a_join(mount: Mount) -> None:  # noqa: F811
    peers, shown = start_joinable(mount, "--ack-timeout", "2")
    w = mount.writer()
    w.call("open('one', 'wb').write(b'1')")
    mount.kill_standby()
    w.call("f = open('two', 'wb'); f.write(b'2'); f.close()")
    wait_for(shown, lambda s: s["degraded"])
    probe = mount.writer()  # the agent's own health probe, on this mount (imported now:
    probe.call(  # an import looks in the working directory, the mount's root)
        "from pathlib import Path; from mosqit_failover.config import SyncDir; "
        "from mosqit_failover.sync.syncmount import SyncMount; "
        f"health = SyncMount(SyncDir({str(mount.active)!r}), Path('/nonexistent'), print)"
    )
    slow = ["sh", "-c", f"sleep 6; exec rsync -a --delete {{under}}/ {mount.standby}/"]
    ask_to_join(mount, peers, 1, catch_up=slow)
    time.sleep(1.5)  # the mount has read the request and frozen its changes
    w.call(ONE_CREATE)
    time.sleep(0.5)
    started = time.monotonic()
    probe.call("health._lookup()", timeout=3)
    assert time.monotonic() - started < 3
    joins = wait_for(shown, lambda s: "standby" in s["joins"])["joins"]
    assert joins["standby"]["result"].startswith("joined")
