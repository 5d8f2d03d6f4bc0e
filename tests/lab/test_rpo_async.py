"""RPO of the asynchronous sync under steady writes (issue 14): files lost per failover.

A writer on the active node creates, fsyncs and closes ~90 files/s and
renames every other one into place, as a mail spool does
(``bench_sync.SPOOL_WRITER``), recording each file once its close (and
rename) returned, in a file on its own node. The active is cut off (both
switch ports down) at a random moment :data:`CUTS` times; after each
failover the recorded files acknowledged before the cut that are missing or
different on the new active are counted (``bench_sync.rpo_cut``), and the
old active is plugged back in (it comes back as the standby).

The bound: what :data:`LAG` (0.5 s) of writes at the measured rate allows
where one push (ssh session, the peer's forced command, rsync) takes at most
:data:`PUSH_BUDGET` (0.125 s); on a slower host (a loaded machine: the
receiver's Python start dominates) what the schedule promises there: the
hold of a stream's first batch, the batch in flight and its own, with
:data:`PUSH_SLACK` for a push slower than the one measured first. Under the
earlier schedule (a batch waited for the whole 1 s interval) a change waited
the interval plus a push, more than either bound. On top, :data:`MARGIN` of
writes: the time between a close() returning and its event reaching the
engine, which the lag does not count (the kernel's inotify queue, watchdog's
reader and emitter threads and the event loop's wake, tens of milliseconds on
a loaded two-core host), and the writer's rate measured over 2 s (a file or
two either way). Files acknowledged while the cables were being pulled are
not counted.

MQLAB_RPO_SEED picks the cut moments (printed on a failure).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import deploy, sshkeys
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.scenarios import bench_sync
from mosqit_failover.lab.topology import LabPlan
from mosqit_failover.sync.plan import HOLD_SHARE, SETTLE

pytestmark = pytest.mark.lab

SPOOL = "/srv/spool"
CUTS = 3
LAG = 0.5
"""Seconds of acknowledged writes a failover may lose (issue 14)."""
MARGIN = 0.1
"""Seconds of writes allowed on top of LAG (see the module doc)."""
PUSH_BUDGET = (LAG - HOLD_SHARE * 1.0) / 2
"""The longest one push (a batch's ssh session and rsync) may take for LAG to hold at the
default interval (1 s): a change waits for the hold, the batch in flight and its own."""
PUSH_SLACK = 1.25
"""A push during the cuts may take this much longer than the one measured before them."""


@pytest.fixture(scope="module")
def spool_pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Lab]:
    sshkeys.setup(lab.nodes, lab_plan)
    sshkeys.install_config(lab.nodes, lab_plan, [SPOOL])
    deploy.start(lab.nodes)
    try:
        yield lab
    finally:
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=60)


def test_async_sync_loses_at_most_what_its_schedule_allows_per_failover(
    spool_pair: Lab,
) -> None:
    nodes = spool_pair.nodes
    roles = deploy.wait_pair(nodes, 40)
    act = next(n for n, r in roles.items() if r == "ACTIVE")
    sb = next(n for n in roles if n != act)
    for node in nodes.values():  # the spool's folders (an empty source is never pushed)
        node.run(["mkdir", "-p", *(f"{SPOOL}/{sub}" for sub in ("tmp", "new", "cur"))])
    bench_sync.wait_in_sync(nodes[act], SPOOL)
    push = bench_sync.single_write_lag(nodes[act], nodes[sb], SPOOL) - SETTLE
    seed = int(os.environ.get("MQLAB_RPO_SEED", time.time_ns() % 10**6))
    cuts = bench_sync.rpo_ours(nodes, spool_pair.plan, SPOOL, CUTS, random.Random(seed))
    report = f"MQLAB_RPO_SEED={seed}, one push {push:.2f}s: " + "; ".join(
        f"cut {c.at:.2f}s in: {c.lost} of {c.acked} lost at {c.rate:.0f}/s "
        f"({c.lost_seconds:.2f}s of writes)"
        for c in cuts
    )
    assert all(c.acked and c.rate >= bench_sync.RPO_RATE / 2 for c in cuts), report
    bound = max(LAG, HOLD_SHARE * 1.0 + 2 * PUSH_SLACK * push)
    over = [c for c in cuts if c.lost > c.rate * (bound + MARGIN)]
    assert not over, f"more than {bound:.2f}s of writes lost: {report}"
