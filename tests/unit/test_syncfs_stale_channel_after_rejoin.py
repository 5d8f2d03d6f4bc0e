"""(A breaker's case, held by the applier's guards.)
a lost channel's receiving end is never stopped; its records still in
flight are applied on the standby after the rejoin, over newer data.

What breaks: when the mount loses a channel (no acknowledgement within ``ack_timeout``:
the standby frozen, or the network cut) it kills its *local* process (ssh). The
standby's applier, the other end, is not told: over ssh the records already sent sit
in TCP buffers (the active's kernel keeps retransmitting an orphaned socket's data and
FIN for minutes, with growing back-off), and once the standby or the network is back
they reach the old applier, which applies them (a Write needs no commit) and only then
sees the end of its stream. Nothing orders that after the rejoin: the engine's catch-up
and the join (3-6 s after the standby's return in the lab) can come first. The old
records then overwrite what the catch-up and the new channel put there.

How: the real mount; the channel is a relay (standing for ssh and TCP: the applier, the
standby's end, outlives the active's process) to the real applier; ``f`` written and
acknowledged; the applier frozen (SIGSTOP); ``f`` rewritten and closed: the close
waits ``ack_timeout``, the channel is lost and its relay killed, the Write still in the
frozen applier's input; ``f`` written again (degraded); a join with a catch-up and a new
applier: joined, ``f`` equal; then the old applier resumes (SIGCONT).

Why it matters: the standby the status calls in sync holds an older ``f`` than every
acknowledged close on the active: after a failover to it, acknowledged data is lost.

Expected: a standby never applies records of a stream that is no longer the active's
channel: e.g. each channel carries an id the standby registers (a new channel or
catch-up for the directory ends or fences the older receivers, as ``flock`` on a
per-directory lock the applier holds, taken over by the catch-up), or the join
waits until the old receiver is gone; here ``f`` on the standby stays the active's.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time

from tests.unit.test_syncfs_mount import PY, Mount, mount  # noqa: F401  (the fixture)
from tests.unit.test_syncfs_rejoin import ask_to_join, wait_for

RELAY = r"""
import os, subprocess, sys, threading
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         start_new_session=True)  # the standby's end: not ours to kill
open(sys.argv[1], "w").write(str(child.pid))
def pump():
    while chunk := sys.stdin.buffer.read1(65536):
        child.stdin.write(chunk)
        child.stdin.flush()
threading.Thread(target=pump, daemon=True).start()
for line in child.stdout:
    sys.stdout.buffer.write(line)
    sys.stdout.flush()
"""


def test_an_old_channels_records_are_not_applied_after_the_rejoin(mount: Mount) -> None:  # noqa: F811
    peers, shown = mount.tmp / "peers.json", mount.tmp / "status.json"
    old_pid = mount.tmp / "old-applier.pid"
    apply = [PY, "-m", "mosqit_failover.syncfs", "apply", "--root", str(mount.standby)]
    apply += ["--state", str(mount.state.path)]
    relay = shlex.join([sys.executable, "-c", RELAY, str(old_pid), *apply])
    mount.start(
        "--ack-timeout", "2", "--peers", str(peers), "--status", str(shown),
        "--channel", f"relayed={relay}",
    )  # fmt: skip
    mount.kill_standby()  # the fixture's own channel: only the relayed one remains
    w = mount.writer()
    w.call("f = open('f', 'wb'); f.write(b'version 1'); f.close()")
    applier = int(old_pid.read_text())
    try:
        assert (mount.standby / "f").read_bytes() == b"version 1"
        os.kill(applier, signal.SIGSTOP)  # the standby frozen (or cut off)
        w.call("f = open('f', 'r+b'); f.write(b'version 2'); f.close()", timeout=20)  # lost
        w.call("f = open('f', 'r+b'); f.write(b'version 3'); f.close()")  # degraded
        wait_for(shown, lambda s: not any(c["alive"] for c in s["channels"]))
        ask_to_join(mount, peers, 1)  # the fixture's channel, as the agent's engine is back
        joined = wait_for(shown, lambda s: "standby" in s["joins"])["joins"]["standby"]
        assert joined["result"].startswith("joined"), joined
        assert (mount.standby / "f").read_bytes() == b"version 3"
        w.call("f = open('g', 'wb'); f.write(b'after'); f.close()")  # through the new channel
        os.kill(applier, signal.SIGCONT)  # the standby's old session gets its data at last
        time.sleep(1.5)
        assert (mount.standby / "f").read_bytes() == b"version 3", (
            "the lost channel's applier applied its old records after the rejoin: the "
            f"standby's f is {(mount.standby / 'f').read_bytes()!r}"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):  # it ends at its stream's end
            os.kill(applier, signal.SIGKILL)
