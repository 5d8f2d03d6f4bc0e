"""The sync's processes run as a service would, not with the agent's own priorities."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from mosqit_failover.sync.proc import run_command

REPORT = '#!/bin/sh\ncut -d" " -f19 /proc/$$/stat\nionice -p $$\nchrt -p $$\n'


@pytest.mark.skipif(
    os.geteuid() != 0, reason="raising priorities needs root (make test runs as root)"
)
def test_rsync_and_ssh_run_at_a_services_priorities(tmp_path: Path) -> None:
    """The unit runs the agent at nice -10 with the real-time disk class: a full sync of
    a large directory at that class would take the disk before the database it copies."""
    report = tmp_path / "report"
    report.write_text(REPORT)
    report.chmod(0o755)
    pid = str(os.getpid())
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, -10)
    subprocess.run(["ionice", "-c", "1", "-n", "4", "-p", pid], check=True)
    try:
        code, out, err = asyncio.run(run_command([str(report)], None, 10, stdout=True))
    finally:
        subprocess.run(["ionice", "-c", "0", "-p", pid], check=True)
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    assert code == 0, err
    nice, io, policy = out.splitlines()[:3]
    assert (nice, io) == ("0", "best-effort: prio 4") and "SCHED_OTHER" in policy, out
