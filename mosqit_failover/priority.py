"""The priorities of what the agent starts: a service's, not the agent's own.

The agent's unit runs it at nice -10 with the real-time disk class (its probes before
anything else on a loaded box), and with a real-time drop-in SCHED_RR. What it starts
inherits all that: a service that a script or init script starts would then compete with
the agent, and with everything else, from above; and a bulk rsync of the sync would take
the disk before the database it copies. :func:`as_a_service` gives such a command a
service's priorities back. ``chrt``, ``nice`` and ``ionice`` (util-linux and coreutils:
on every Debian) each exec the next, so the command keeps its process.
"""

from __future__ import annotations

import os


def service_priority(niceness: int, policy: int) -> list[str]:
    """The commands that give what follows them a service's priorities, from an agent
    running at ``niceness`` under scheduling ``policy`` (nothing when those are a
    service's already)."""
    prefix: list[str] = []
    if policy not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        prefix += ["chrt", "--other", "0"]
    if niceness < 0:
        # the unit sets the real-time disk class with the negative nice value
        prefix += ["nice", "-n", str(-niceness), "ionice", "-c", "2", "-n", "4"]
    return prefix


def as_a_service() -> list[str]:
    """:func:`service_priority` for this process as it runs now."""
    return service_priority(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))
