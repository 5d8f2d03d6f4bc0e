"""A reload on the ACTIVE node never mounts or unmounts a synchronous directory under the
running services (breaker's finding 5).

A FUSE mount put over a directory the service works in misses every descriptor and working
directory it holds open there (those writes are never replicated, yet their close()
returns as if synchronous); one taken away under it fails its open files with ENOTCONN
(the last test shows that on the real mount). So a change of which directories are
synchronous (added, removed, async <-> synchronous) waits for the next promotion, where
the services are stopped: one decision line per directory says so, and a reload's
StartSync mounts nothing (its third field: the directories to mount).
"""

from __future__ import annotations

import errno
import os
import signal

import pytest

from mosqit_failover.config import Config, parse
from mosqit_failover.events import Command, OperatorCommand, Role
from mosqit_failover.sim_scenarios import SIM_CONFIG
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.transcript import Harness, active

SYNC = '[[sync]]\npath = "/srv/data"'
SYNCHRONOUS = f'{SYNC}\nmode = "synchronous"'
KEEPS_MOUNT = (
    "[reconfigure] alpha ACTIVE: reload: synchronous mode of /srv/data changes at the next "
    "promotion; the running services keep its synchronous mount until then (a switchover "
    "applies it) [epoch 1]"
)


def _config(sync: str) -> Config:
    assert SIM_CONFIG.count(SYNC) == 1
    return parse(SIM_CONFIG.replace(SYNC, sync))


def _reload(h: Harness, sync: str) -> list[str]:
    start = h.now
    h.feed_actions(h.core.reconfigure(_config(sync), h.now, False))
    return h.transcript(start)


def test_the_promotion_mounts_the_synchronous_directories() -> None:
    h = active(config=_config(SYNCHRONOUS))
    assert any("StartSync(1, True, ('/srv/data',))" in line for line in h.transcript()), (
        h.transcript()
    )


def test_a_reload_adding_a_synchronous_directory_mounts_it_at_the_next_promotion() -> None:
    h = active(config=_config("# no sync yet"))
    assert _reload(h, SYNCHRONOUS) == [
        "[reconfigure] alpha ACTIVE: config reloaded: sync added /srv/data [epoch 1]",
        "[reconfigure] alpha ACTIVE: reload: synchronous mode of /srv/data changes at the next "
        "promotion; the running services keep the plain directory, synced asynchronously "
        "until then (a switchover applies it) [epoch 1]",
        "plan 2: StartSync(1, True, ())",  # the engines only: nothing mounted
        "[plan-done] alpha ACTIVE: reconfiguration complete [epoch 1]",
    ]


def test_a_reload_removing_the_last_synchronous_directory_keeps_its_mount() -> None:
    h = active(config=_config(SYNCHRONOUS))
    assert _reload(h, "# sync removed") == [
        "[reconfigure] alpha ACTIVE: config reloaded: sync removed /srv/data [epoch 1]",
        KEEPS_MOUNT,  # no StopSync under the running services
    ]
    start = h.now  # the demotion ends it, after the services stopped
    h.feed(OperatorCommand(Command.SWITCHOVER))
    plans = [line for line in h.transcript(start) if line.startswith("plan")]
    assert plans == [
        "plan 2: PersistState(1, DEMOTING), StopResource(app), StopResource(db), "
        "StopSync(True, True, beta), ReleaseVip, PersistState(1, WAITING)"
    ], plans


def test_a_reload_making_a_directory_asynchronous_keeps_its_mount() -> None:
    h = active(config=_config(SYNCHRONOUS))
    assert _reload(h, SYNC) == [
        "[reconfigure] alpha ACTIVE: config reloaded: no resource or synced directory "
        "changed [epoch 1]",
        KEEPS_MOUNT,
    ]


def test_a_reload_that_changes_no_mode_says_nothing_of_it_and_the_standby_just_takes_it() -> None:
    h = active(config=_config(SYNCHRONOUS))
    assert _reload(h, f'{SYNCHRONOUS}\nack_timeout = "5s"') == [
        "[reconfigure] alpha ACTIVE: config reloaded: no resource or synced directory "
        "changed [epoch 1]",
    ]
    assert h.role() is Role.ACTIVE


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse"
)
def test_stopping_the_mount_under_a_running_writer_breaks_its_open_file(mount: Mount) -> None:  # noqa: F811
    """Why: what an unmount under the running service does to a file it holds open."""
    mount.start()
    w = mount.writer()
    w.call("f = open('log', 'wb', buffering=0); f.write(b'first line\\n')")
    os.kill(mount.pid, signal.SIGTERM)  # what SyncMount.stop() runs
    assert mount.process is not None
    mount.process.wait(10)
    with pytest.raises(OSError) as failed:
        w.call("f.write(b'second line\\n')")  # the service goes on writing its open file
    assert failed.value.errno == errno.ENOTCONN
