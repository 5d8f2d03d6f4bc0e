"""The rejoin's catch-up (the engine's full sync through the standby's forced command)
does not miss a file rewritten in place with the same size within the same second while
the standby was away: the receiving rsync compares mtimes to the nanosecond
(``--modify-window=-1``, ``receive.RECEIVER_OPTIONS``), not rsync's whole seconds, so the
standby the join calls in sync holds the new content (found by a breaker: a counter or a
fixed-size record rewritten in place kept its old bytes on the standby).
"""

from __future__ import annotations

import shlex
import sys
import time

from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync import commands
from mosqit_failover.syncfs import remote
from tests.unit.test_sync_receive import receiver_config_text
from tests.unit.test_syncfs_mount import Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import ask_to_join, start_joinable, wait_for


def production_catch_up(m: Mount) -> list[str]:
    """The agent's catch-up for a standby whose synced directory is ``m.standby``, its ssh
    a script doing what sshd does with the standby's forced command (sync-receive)."""
    etc = m.tmp / "etc"
    etc.mkdir()
    config = etc / "node.toml"
    config.write_text(receiver_config_text(m.tmp, m.standby))
    cfg = configuration.load(config)
    StateFile(cfg.state_dir / "state.json").save(m.epoch, Role.STANDBY)
    forced = [sys.executable, "-m", "mosqit_failover.sync.receive", "--config", str(config)]
    sshd = m.tmp / "fake-sshd"
    sshd.write_text(
        "#!/bin/sh\n"  # ssh [OPTIONS] HOST COMMAND: drop the options and the host
        'while [ "${1#-}" != "$1" ]; do case $1 in -l|-p|-o|-i) shift;; esac; shift; done\n'
        'shift\nSSH_ORIGINAL_COMMAND="$*"; export SSH_ORIGINAL_COMMAND\n'
        f"exec {shlex.join(forced)}\n"
    )
    sshd.chmod(0o755)
    peer = commands.Peer("192.0.2.12", "root", 22, "/k", 5.0, m.tmp / "ctl")
    argv = remote.catch_up_argv(cfg.sync[0], peer, m.epoch)
    argv[argv.index("-e") + 1] = str(sshd)
    return argv


def test_a_same_second_rewrite_made_while_degraded_reaches_the_rejoined_standby(
    mount: Mount,  # noqa: F811
) -> None:
    peers, shown = start_joinable(mount, "--ack-timeout", "2")
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
