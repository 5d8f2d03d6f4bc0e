"""A standby back in the synchronous replication of a running mount (``--peers``).

Breaker's finding 6: in block mode, after a failover the new active's mount starts with
no channel (the old active is gone) and nothing re-added one: every close() failed with
EIO for the whole epoch, even once the old node was back as a standby and caught up.
Here the agent's part is played by the test: it writes the peers file (what
``sync/manager.py`` writes once the standby's engine caught it up), with a local rsync as
the catch-up and the real applier as the channel. The mount joins the standby under a
freeze of its changes, and the sync points succeed again; in degrade mode it leaves
``degraded``.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

from mosqit_failover.events import Role
from tests.unit.test_syncfs_mount import Mount, mount, same  # noqa: F401  (the fixture)


def ask_to_join(m: Mount, peers: Path, request: int, catch_up: list[str] | None = None) -> None:
    """Write the peers file as the agent does (atomically)."""
    channel = shlex.split(m.channel().partition("=")[2])
    entry = {
        "name": "standby",
        "request": request,
        "channel": channel,
        "catch_up": catch_up or ["rsync", "-a", "--delete", "{under}/", f"{m.standby}/"],
    }
    temp = peers.with_suffix(".tmp")
    temp.write_text(json.dumps({"epoch": m.epoch, "peers": [entry]}))
    os.replace(temp, peers)


def start_joinable(m: Mount, *options: str) -> tuple[Path, Path]:
    """Start the mount with ``options``, a peers file and a status file: their paths."""
    peers, shown = m.tmp / "peers.json", m.tmp / "status.json"
    m.start(*options, "--peers", str(peers), "--status", str(shown))
    return peers, shown


def status(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def wait_for(path: Path, test: Any, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        shown = status(path)
        if test(shown):
            return shown
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {status(path)}")


def test_block_mode_recovers_once_the_standby_is_back(mount: Mount) -> None:  # noqa: F811
    mount.state.save(5, Role.ACTIVE)  # the old active, not a standby yet
    peers, shown = start_joinable(
        mount, "--on-standby-loss", "block", "--block-timeout", "1", "--ack-timeout", "2"
    )
    w = mount.writer()
    w.call("f = open('before', 'wb'); f.write(b'x' * 100000)")
    try:
        w.call("f.close()", timeout=20)
        raise AssertionError("close() returned with no standby in block mode")
    except OSError as error:
        assert error.errno == errno.EIO  # as documented: no standby
    assert status(shown)["fenced"] is None  # an old active of our epoch proves nothing
    mount.state.save(5, Role.STANDBY)  # the old node is back, a standby of this epoch
    ask_to_join(mount, peers, 1)
    wait_for(shown, lambda s: "standby" in s["joins"])
    started = time.monotonic()
    w.call("f = open('after', 'wb'); f.write(b'y'); f.close()", timeout=20)
    assert time.monotonic() - started < 1  # through the channel, no block_timeout waited
    same(mount)  # 'before' came with the catch-up, 'after' through the channel
    after = status(shown)
    assert after["joins"]["standby"]["result"].startswith("joined"), after
    assert after["degraded"] is False and after["channels"][-1]["alive"] is True
    assert "standby standby (request 1): joined" in mount.log()


def test_degrade_mode_leaves_degraded_when_the_standby_rejoins(mount: Mount) -> None:  # noqa: F811
    peers, shown = start_joinable(mount, "--ack-timeout", "2")
    w = mount.writer()
    w.call("open('one', 'wb').write(b'1')")
    mount.kill_standby()
    w.call("open('two', 'wb').write(b'2'); os.rename('one', 'uno')")  # degraded: local only
    assert wait_for(shown, lambda s: s["degraded"])["channels"][0]["alive"] is False
    ask_to_join(mount, peers, 7, catch_up=["sh", "-c", "echo no route to standby >&2; exit 12"])
    failed = wait_for(shown, lambda s: "standby" in s["joins"])["joins"]["standby"]
    assert failed == {"request": 7, "result": "failed: the catch-up exited 12: no route to standby"}
    assert status(shown)["degraded"] is True
    ask_to_join(mount, peers, 8)  # the agent asks again (after its engine caught up again)
    wait_for(shown, lambda s: s["joins"]["standby"]["request"] == 8)
    joined = status(shown)
    assert joined["degraded"] is False, joined
    assert [c["name"] for c in joined["channels"]] == ["standby"]  # replaced, not added
    same(mount)
    w.call("f = open('three', 'wb'); f.write(b'3'); f.close(); os.unlink('two')")
    same(mount)
