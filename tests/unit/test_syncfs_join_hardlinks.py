"""(Found by a breaker.) A hard link made while the standby was away is one file on the
standby after the rejoin: the catch-up (the engine's full sync) runs with ``-H``, which
the standby's receiver allows, so a later acknowledged write through one name is seen
through the other there too (before, the catch-up split the link into two files).
"""

from __future__ import annotations

from tests.unit.test_syncfs_join_same_second import production_catch_up
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import ask_to_join, start_joinable, wait_for


def test_a_hard_link_made_while_degraded_stays_one_file_after_the_rejoin(mount: Mount) -> None:  # noqa: F811
    peers, shown = start_joinable(mount, "--ack-timeout", "2")
    w = mount.writer()
    w.call("f = open('a', 'wb'); f.write(b'old contents'); f.close()")
    mount.kill_standby()
    w.call("f = open('x', 'wb'); f.write(b'1'); f.close(); os.link('a', 'b')")  # degraded
    assert wait_for(shown, lambda s: s["degraded"])["degraded"]
    ask_to_join(mount, peers, 1, catch_up=production_catch_up(mount))
    joined = wait_for(shown, lambda s: "standby" in s["joins"])["joins"]["standby"]
    assert joined["result"].startswith("joined"), joined
    assert (mount.standby / "b").read_bytes() == b"old contents"  # the catch-up copied it
    w.call("f = open('a', 'r+b'); f.write(b'NEW'); f.close()")  # acknowledged by the standby
    assert (mount.active / "b").read_bytes() == b"NEW contents"
    assert (mount.standby / "a").read_bytes() == b"NEW contents"
    standby_b = mount.standby / "b"
    assert standby_b.read_bytes() == b"NEW contents", (
        f"the standby's b holds {standby_b.read_bytes()!r} (links: {standby_b.stat().st_nlink})"
        " after an acknowledged write through a: the catch-up split the hard link"
    )
