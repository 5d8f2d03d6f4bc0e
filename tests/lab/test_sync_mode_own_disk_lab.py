"""In the lab: a synchronous directory that is a mount point of its own file system on
each node (a data disk; a tmpfs here) no longer leaves the cluster with no active node.

Before (breaker's finding 7, two runs): each promotion failed at StartSync with the
mount's line "... is already a mount point ...", was rolled back, and the nodes took turns
promoting and rolling back for ever (epochs 9, 10, 11, 12 ... within a minute): no VIP, no
service. Now the promotion goes on with the directory synced asynchronously (degraded,
one line naming the fix, status degraded), and the node's own file system at the
directory stays mounted with its files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import deploy, sshkeys
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.topology import LabPlan
from tests.lab.test_sync_mode_lab import SETTINGS, SPOOL, wind_down

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def disk_pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Lab]:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("the synchronous mode needs /dev/fuse on the host")
    sshkeys.setup(lab.nodes, lab_plan)
    sshkeys.install_config(lab.nodes, lab_plan, [SPOOL], None, **SETTINGS)
    for node in lab.nodes.values():  # the spool on a file system of its own, with data
        node.run(["mkdir", "-p", SPOOL])
        node.run(["mount", "-t", "tmpfs", "spooldisk", SPOOL])
        node.write_file(f"{SPOOL}/seed", "seed on the node's own disk\n")
    deploy.start(lab.nodes)
    try:
        yield lab
    finally:
        wind_down(lab)
        for node in lab.nodes.values():
            node.run(["umount", "-l", SPOOL], check=False)


def test_the_pair_forms_with_the_directory_asynchronous_and_its_disk_mounted(
    disk_pair: Lab,
) -> None:
    nodes = disk_pair.nodes
    roles = deploy.wait_pair(nodes, 60)
    act = nodes[next(n for n, r in roles.items() if r == "ACTIVE")]
    journal = ""
    for _ in range(100):
        journal = act.run(
            ["journalctl", "-u", deploy.UNIT, "--no-pager", "-o", "cat", "-g", "not synchronous"],
            check=False,
        ).stdout
        if "not synchronous in epoch" in journal:
            break
        time.sleep(0.3)
    assert "already a mount point" in journal and "the promotion goes on" in journal, journal
    rolled_back = act.run(
        ["journalctl", "-u", deploy.UNIT, "--no-pager", "-o", "cat", "-g", "rolling back"],
        check=False,
    ).stdout
    assert "rolling back" not in rolled_back, rolled_back
    (shown,) = deploy.status(act)["sync"]["dirs"]
    assert shown["degraded"] is True and shown["state"].startswith("asynchronous"), shown
    fstypes = act.run(["findmnt", "-rn", "-o", "FSTYPE", SPOOL], check=False).stdout
    assert fstypes.split() == ["tmpfs"], fstypes  # the node's own disk, nothing over it
    assert "seed" in act.run(["ls", "-a", SPOOL], check=False).stdout
    assert deploy.wait_pair(nodes, 5) == roles  # still one active, no flapping
