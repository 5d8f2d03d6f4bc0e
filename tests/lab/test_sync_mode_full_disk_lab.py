"""A standby whose disk is full, in the lab (issue 14, docs/sync-mode.md "When a standby is
lost"): real agents from the package, the real FUSE mount on the active node, the real
channel over ssh to the standby's applier.

Each synchronous directory sits on a small file system of its own on each node (a data
disk; a tmpfs here), one directory per ``on_standby_loss``. Once the pair is in sync, a
ballast file outside the synced directory fills the standby's disk; files then written
and closed through the mount on the active node do not fit there:

- the applier refuses (ENOSPC), the channel is lost; the agent's journal names the
  standby and the full disk, the alert fires, the directory is ``synchronous,
  degraded`` with the refusal as its last error, and the standby withdraws its data
  epoch (not eligible as freshest while it misses writes);
- ``degrade``: every close returns (the first one as soon as the refusal arrives);
  ``block``: every close fails with EIO after ``block_timeout``, none hangs longer;
- the standby's engine cannot catch it up while the disk is full (its error says so);
  the ballast removed, it is caught up, taken back into the mount (not degraded, its
  data epoch recorded again) and holds every file the active wrote, byte-identical.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mosqit_failover.lab import deploy, sshkeys
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios.bench_syncmode import sync_dir
from mosqit_failover.lab.topology import LabPlan
from tests.lab.multi import wait_for
from tests.lab.test_sync_mode_lab import ACK, SETTINGS, wind_down

pytestmark = pytest.mark.lab

DISK_MIB = 8  # each directory's file system, on every node
DISKS = {"degrade": "/srv/disk-degrade", "block": "/srv/disk-block"}
SPOOLS = {mode: f"{disk}/spool" for mode, disk in DISKS.items()}
BLOCK = 2.0  # block_timeout of the block-mode directory
FILE_KIB = 256

WRITER = r"""
import json, os, sys, time
root, tag, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = []
for i in range(count):
    start = time.monotonic()
    try:
        fd = os.open(os.path.join(root, f"{tag}-{i:02d}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, os.urandom(size))
        os.close(fd)
        code = 0
    except OSError as error:
        code = error.errno
    out.append([round(time.monotonic() - start, 3), code])
print(json.dumps(out))
"""
"""Writes and closes ``count`` files of random bytes; prints [seconds the write and
close took, errno or 0] for each."""


@pytest.fixture(scope="module")
def disk_pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Lab]:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("the synchronous mode needs /dev/fuse on the host")
    sshkeys.setup(lab.nodes, lab_plan)
    deploy.install(lab.nodes, lab_plan)
    config = (
        deploy.lab_config(lab_plan)
        + sshkeys.sync_tables([SPOOLS["degrade"]], **SETTINGS)
        + sshkeys.sync_tables(
            [SPOOLS["block"]], **SETTINGS, on_standby_loss="block", block_timeout=f"{BLOCK:g}s"
        )
    )
    for node in lab.nodes.values():
        node.write_file(deploy.CONFIG_PATH, config)
        for mode, disk in DISKS.items():  # a small disk; the synced directory inside it
            node.run(["mkdir", "-p", disk])
            node.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", f"disk-{mode}", disk])
            node.run(["mkdir", "-p", SPOOLS[mode]])
            node.write_file(f"{SPOOLS[mode]}/seed", "seed\n")
    deploy.start(lab.nodes)
    try:
        yield lab
    finally:
        wind_down(lab)
        left = []
        for node in lab.nodes.values():  # no mount of ours may outlive the agents' stop
            for disk in DISKS.values():
                mounts = node.run(["findmnt", "-rn", "-o", "FSTYPE", disk], check=False).stdout
                if mounts.split() != ["tmpfs"]:
                    left.append(f"{node.name} {disk}: {mounts.split()}")
                node.run(["umount", "-l", disk], check=False)
        assert not left, f"mounts left: {left}"


@pytest.fixture
def pair(disk_pair: Lab) -> Iterator[dict[str, Node]]:
    """The pair's nodes; afterwards no ballast is left on any disk (a failed test's too)."""
    try:
        yield disk_pair.nodes
    finally:
        for node in disk_pair.nodes.values():
            node.run(["rm", "-f", *(f"{disk}/ballast" for disk in DISKS.values())], check=False)


def in_sync_pair(nodes: dict[str, Node]) -> tuple[Node, Node]:
    """(active, standby), both directories mounted with the standby's channel live and
    the standby's data epoch the active's."""
    roles = deploy.wait_pair(nodes, 60)
    act = nodes[next(n for n, r in roles.items() if r == "ACTIVE")]
    sb = nodes[next(n for n, r in roles.items() if r == "STANDBY")]

    def in_sync() -> bool:
        try:
            shown = deploy.status(sb)["data_epoch"] == deploy.status(act)["epoch"]
            return shown and all(sync_dir(act, s)["in_sync"] for s in SPOOLS.values())
        except (LabError, KeyError, StopIteration):
            return False

    wait_for("the pair in sync through both mounts", in_sync, 60, period=0.3)
    return act, sb


def fill(node: Node, disk: str) -> None:
    """Fill ``disk`` on ``node`` with a ballast file beside (not in) the synced directory."""
    ballast = f"{disk}/ballast"
    node.run(["sh", "-c", f"dd if=/dev/zero of={ballast} bs=64k 2>/dev/null; true"])
    free = node.run(["df", "--output=avail", "-B1", disk]).stdout.split()[-1]
    assert int(free) < FILE_KIB * 1024, f"{disk} on {node.name} still has {free} bytes free"


def write(act: Node, root: str, tag: str, count: int) -> list[tuple[float, int]]:
    proc = act.run(
        ["python3", "-c", WRITER, root, tag, str(count), str(FILE_KIB * 1024)], timeout=120
    )
    return [(seconds, code) for seconds, code in json.loads(proc.stdout)]


def said(node: Node, since: float) -> list[str]:
    return [e.get("MESSAGE", "") for e in node.journal(identifier="mosqit-failover", since=since)]


def digests(node: Node, root: str, tag: str) -> str:
    script = f"cd {root} && md5sum {tag}-*"
    return node.run(["sh", "-c", script], check=False).stdout


def same_files(a: Node, b: Node, root: str, tag: str) -> None:
    """The files ``tag``-* under ``root`` are on both nodes, byte-identical."""
    here, there = digests(a, root, tag), digests(b, root, tag)
    assert here and here == there, f"{a.name}: {here!r}; {b.name}: {there!r}"


def check_lost_for_the_full_disk(act: Node, sb: Node, root: str, since: float) -> dict[str, Any]:
    """The journal line, the alert, the status and the standby's withdrawal; the status."""
    lines: list[str] = []

    def lost() -> list[str]:  # the agent follows the mount's status file
        lines[:] = said(act, since)
        return [line for line in lines if f"sync {root}: synchronous channel lost" in line]

    try:
        wait_for("the journal's line", lambda: bool(lost()), 10)
    except AssertionError as error:
        mount = act.journal(unit="mosqit-syncfs-*", since=since)
        raise AssertionError(f"{error}: {lines} {[e.get('MESSAGE') for e in mount]}") from None
    line = lost()[0]
    assert sb.name in line and "No space left on device" in line, line
    assert f"{sb.name}: refused: cannot apply Write " in line, line  # the applier's words
    print(f"the agent's line: {line}")
    assert any(line.startswith("ALERT sync-degraded") and root in line for line in lines), lines
    shown = sync_dir(act, root)
    assert shown["degraded"] and shown["state"] == "synchronous, degraded", shown
    assert "No space left on device" in str(shown["last_error"]), shown
    assert sb.name in str(shown["last_error"]), shown
    epoch = deploy.status(act)["epoch"]
    wait_for(
        f"{sb.name} withdrawing its data epoch",
        lambda: deploy.status(sb)["data_epoch"] == epoch - 1,
        10,
    )
    peer = deploy.status(act)["peers"][sb.name]
    assert peer["in_sync"] is False, peer
    withdrawn = [e.get("MESSAGE", "") for e in deploy.decisions(sb, since)]
    assert any(f"data epoch {epoch} withdrawn" in m for m in withdrawn), withdrawn
    return shown


def freed_and_taken_back(act: Node, sb: Node, mode: str, tag: str, since: float) -> None:
    """The engine cannot catch the full standby up; the ballast removed, it does, the mount
    takes it back and the standby holds every file, its data epoch recorded again."""
    root, disk = SPOOLS[mode], DISKS[mode]

    def engine_says_full() -> bool:
        engines = (sync_dir(act, root).get("peers") or {}).get(sb.name) or {}
        return "No space left on device" in str(engines.get("last_error"))

    wait_for("the engine's catch-up refused by the full disk", engine_says_full, 20)
    print(f"the engine: {sync_dir(act, root)['peers'][sb.name]['last_error']}")
    assert sync_dir(act, root)["degraded"]
    sb.run(["rm", f"{disk}/ballast"])
    freed = time.monotonic()
    wait_for(
        f"{sb.name} taken back into the mount",
        lambda: sync_dir(act, root)["in_sync"] and not sync_dir(act, root)["degraded"],
        60,
        period=0.3,
    )
    took = time.monotonic() - freed
    wait_for(
        "the journal's line",
        lambda: any(f"synchronous channel to {sb.name} back" in line for line in said(act, since)),
        10,
    )
    epoch = deploy.status(act)["epoch"]
    wait_for(
        f"{sb.name}'s data epoch recorded again",
        lambda: deploy.status(sb)["data_epoch"] == epoch,
        15,
    )
    same_files(act, sb, root, tag)
    print(f"{mode}: taken back {took:.1f}s after the disk was freed")


def test_a_full_standby_disk_degrades_and_is_caught_up_once_freed(pair: dict[str, Node]) -> None:
    act, sb = in_sync_pair(pair)
    since = time.time()
    fill(sb, DISKS["degrade"])
    took = write(act, SPOOLS["degrade"], "d", 6)
    print(f"degrade, the standby's disk full: {took}")
    assert all(code == 0 for _, code in took), took
    assert max(t for t, _ in took) < ACK + 3, took  # never more than ack_timeout
    check_lost_for_the_full_disk(act, sb, SPOOLS["degrade"], since)
    assert sync_dir(act, SPOOLS["block"])["in_sync"]  # the other directory is not concerned
    freed_and_taken_back(act, sb, "degrade", "d", since)


def test_a_full_standby_disk_in_block_mode_fails_closes_with_eio(pair: dict[str, Node]) -> None:
    act, sb = in_sync_pair(pair)
    since = time.time()
    fill(sb, DISKS["block"])
    took = write(act, SPOOLS["block"], "b", 3)
    print(f"block, the standby's disk full: {took}")
    assert [code for _, code in took] == [errno.EIO] * 3, took
    assert all(BLOCK * 0.9 <= t < ACK + BLOCK + 3 for t, _ in took), took
    check_lost_for_the_full_disk(act, sb, SPOOLS["block"], since)
    freed_and_taken_back(act, sb, "block", "b", since)
    after = write(act, SPOOLS["block"], "after", 3)  # the standby acknowledges again
    assert [code for _, code in after] == [0] * 3, after
    same_files(act, sb, SPOOLS["block"], "after")
