"""A reload (SIGHUP: the agent re-reads its config) while a standby is being taken back into
the synchronous mount (suspicion 3 of the catch-up review).

The agent's side is the real :class:`SyncManager` with the real mount, the real engines
and the real forced command on the standby's side; ``ssh`` on the PATH is a script doing
what ssh and sshd do with that forced command on this machine (a master is a control
socket that stays; a session runs ``sync-receive`` with SSH_ORIGINAL_COMMAND), and it
logs each session. The mount's catch-up (a connection of its own, ``ControlPath=none``)
takes 3 s, so the reload lands while the mount is frozen for the join: the config changes
the directory's settings (its rsync timeout).

What happened before: ``reconfigure`` gave every peer of a changed directory a new engine
unless its channel was live; the joining standby's engine had been taken away by the
rejoin, so it got a new one at once, whose full sync ran beside the mount's catch-up and
then beside the new channel (an rsync beside a live channel can put an older copy over
an acknowledged change; the catch-up generation it began refused the new channel at its
next chunk). Now the joining standby is left to the join: no engine until its answer
(one line says so), and a writer frozen by the join goes on once it is done.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.mount_namespace import needs_mounts, run_in_mount_namespace

pytestmark = needs_mounts

SSH = r"""#!/bin/sh
# ssh, and sshd's forced command on the standby, on this machine
log={tmp}/ssh.log
case " $* " in *" -M "*)  # the master: its control socket stays until it is killed
    for word; do case $word in ControlPath=*) control=${{word#ControlPath=}};; esac; done
    : > "$control"; exec sleep 600;; esac
case " $* " in *" ControlPath=none "*) own=own;; *) own=shared;; esac
while [ "${{1#-}}" != "$1" ]; do case $1 in -l|-p|-o|-i) shift;; esac; shift; done
shift
SSH_ORIGINAL_COMMAND="$*"; export SSH_ORIGINAL_COMMAND
echo "$(date +%s.%N) $own $*" >> $log
case "$own $*" in "own "*--server*)  # the mount's catch-up takes a while (or fails)
    sleep 3; [ -e {tmp}/catch-up-fails ] && {{ echo "connection reset" >&2; exit 12; }};; esac
exec {python} -m mosqit_failover.sync.receive --config {config}
"""

SCRIPT = r"""
import asyncio, json, os, sys, time
from pathlib import Path
from mosqit_failover import config as configuration
from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from mosqit_failover.sync.manager import SyncManager
from tests.unit.loopback_pair import LOOPBACK_PAIR
from tests.unit.test_sync_reload_during_join import SSH
directory, standby, _, runtime, case = sys.argv[1:6]
tmp = os.path.dirname(directory)
if case == "fails":
    Path(tmp, "catch-up-fails").touch()

def text(timeout):
    return LOOPBACK_PAIR.format(tmp=tmp) + (
        f'[[sync]]\npath = "{directory}"\npeer_path = "{standby}"\n'
        f'mode = "synchronous"\nack_timeout = "5s"\ntimeout = "{timeout}s"\n'
    )

config = Path(tmp, "etc", "node.toml")  # not around the synced directories
config.parent.mkdir()
config.write_text(text(30))
StateFile(Path(tmp, "state", "state.json")).save(7, Role.STANDBY)  # beta's, the receiver's
bin_dir = Path(tmp, "bin")
bin_dir.mkdir()
(bin_dir / "ssh").write_text(SSH.format(tmp=tmp, python=sys.executable, config=config))
(bin_dir / "ssh").chmod(0o755)
os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
Path(directory, "before").write_text("there before the promotion")
seen = {"notes": []}

def log():
    path = Path(tmp, "ssh.log")
    return path.read_text().splitlines() if path.exists() else []

async def until(test, seconds):
    for _ in range(int(seconds * 10)):
        if test():
            return True
        await asyncio.sleep(0.1)
    return False

def write(name):
    started = time.monotonic()
    with open(os.path.join(directory, name), "w") as out:
        out.write(name)
    return round(time.monotonic() - started, 2)

async def main():
    note = lambda text, priority: seen["notes"].append(text)
    manager = SyncManager(configuration.load(config), "alpha", note, Path(runtime),
                          on_in_sync=lambda peer, ok: None)
    manager.start(7)
    await manager.mount(7, [])  # beta not heard: the mount starts without it, degraded
    asked = lambda: any("asking the mount to take it back" in n for n in seen["notes"])
    seen["asked"] = await until(asked, 30)
    seen["catching_up"] = await until(lambda: any(" own " in l and "--server" in l
                                                  for l in log()), 10)
    at = time.time()
    writer = asyncio.ensure_future(asyncio.to_thread(write, "during"))  # frozen by the join
    await asyncio.sleep(0.3)
    seen["reload"] = manager.reconfigure(configuration.parse(text(31)))
    answered = lambda: any("synchronous channel to beta back" in n or "not taken back" in n
                           for n in seen["notes"])
    seen["answered"] = await until(answered, 30)
    seen["writer_waited"] = await writer
    await asyncio.sleep(1.5)  # an engine started by the reload would have pushed by now
    if case == "fails":
        pushed = lambda: any(" shared " in l and "--timeout=31" in l for l in log())
        seen["engine_pushed"] = await until(pushed, 20)  # the engine again, new settings
    seen["after"] = write("after")
    seen["status"] = manager.status()["dirs"][0]
    seen["pushes"] = [l for l in log() if float(l.split()[0]) > at and "--server" in l]
    seen["standby"] = sorted(os.listdir(standby))
    await manager.unmount()
    await manager.stop()

asyncio.run(main())
print(json.dumps(seen))
"""


def test_a_reload_during_a_join_leaves_the_standby_to_the_join(tmp_path: Path) -> None:
    seen = run_in_mount_namespace(tmp_path, SCRIPT, "joins")
    notes = "\n".join(seen["notes"])
    assert seen["asked"] and seen["catching_up"], notes
    # no push to beta from the reload on: the catch-up had begun before it
    assert seen["pushes"] == [], seen["pushes"]
    assert "synchronous channel to beta back" in notes, notes
    assert seen["standby"] == ["after", "before", "during"], seen  # through the new channel
    # the reload said what it did about the standby being joined
    assert any("beta" in line and "being taken back" in line for line in seen["reload"]), seen
    status = seen["status"]
    assert status["degraded"] is False and status["mount"]["channels"][0]["alive"], status
    assert "peers" not in status, status  # no engine for beta: its channel writes there
    # the writer frozen by the join went on once it was done, without an error
    assert 0.5 < seen["writer_waited"] < 30, seen
    assert seen["after"] < 2, seen


def test_a_join_that_fails_after_a_reload_gives_the_standby_its_engine_back(
    tmp_path: Path,
) -> None:
    seen = run_in_mount_namespace(tmp_path, SCRIPT, "fails")
    notes = "\n".join(seen["notes"])
    assert seen["asked"] and seen["catching_up"], notes
    assert "beta not taken back (failed: the catch-up exited 12" in notes, notes
    assert any("being taken back" in line for line in seen["reload"]), seen
    assert seen["writer_waited"] < 30 and seen["after"] < 2, seen  # degrade: on at once
    # not left with neither a channel nor an engine: the engine again, the reload's settings
    assert seen["engine_pushed"], seen
    assert "beta" in seen["status"]["peers"], seen["status"]
    assert seen["status"]["degraded"] is True, seen["status"]
