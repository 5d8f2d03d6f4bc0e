"""The rejoin's catch-up (the engine's full sync through the standby's forced command)
does not miss a file rewritten in place with the same size within the same second while
the standby was away: the receiving rsync compares mtimes to the nanosecond
(``--modify-window=-1``, ``receive.RECEIVER_OPTIONS``), not rsync's whole seconds, so the
standby the join calls in sync holds the new content (found by a breaker: a counter or a
fixed-size record rewritten in place kept its old bytes on the standby).
"""

from __future__ import annotations

import time

from tests.unit.test_break2_join_hardlinks import production_catch_up
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import ask_to_join, wait_for


def test_a_same_second_rewrite_made_while_degraded_reaches_the_rejoined_standby(
    mount: Mount,  # noqa: F811
) -> None:
    peers, shown = mount.tmp / "peers.json", mount.tmp / "status.json"
    mount.start("--ack-timeout", "2", "--peers", str(peers), "--status", str(shown))
    w = mount.writer()
    time.sleep(1.02 - time.time() % 1)  # at the start of a second: all of it fits in one
    w.call("f = open('state', 'wb'); f.write(b'counter=0001'); f.close()")
    mount.kill_standby()
    w.call("f = open('state', 'r+b'); f.write(b'counter=0002'); f.close()")  # degraded
    before, after = (mount.standby / "state").stat(), (mount.active / "state").stat()
    assert int(before.st_mtime) == int(after.st_mtime), "not within one second: run again"
    assert wait_for(shown, lambda s: s["degraded"])["degraded"]
    ask_to_join(mount, peers, 1, catch_up=production_catch_up(mount))
    joined = wait_for(shown, lambda s: "standby" in s["joins"])
    assert joined["joins"]["standby"]["result"].startswith("joined"), joined["joins"]
    assert joined["degraded"] is False  # the standby counts as in sync again
    assert (mount.standby / "state").read_bytes() == b"counter=0002", (
        "the rejoined standby holds the old bytes of a file changed while it was away"
    )
