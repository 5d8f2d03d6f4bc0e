"""RPO of the asynchronous sync under steady writes (issue 14): files lost per failover.

A writer on the active node creates, fsyncs and closes ~90 files/s and
renames every other one into place, as a mail spool does
(``bench_sync.SPOOL_WRITER``), recording each file once its close (and
rename) returned, in a file on its own node. The active is cut off (both
switch ports down) at a random moment :data:`CUTS` times; after each
failover the recorded files acknowledged before the cut that are missing or
different on the new active are counted (``bench_sync.rpo_cut``), and the
old active is plugged back in (it comes back as the standby).

What it asserts: the loss stays within :data:`WORST_LAG` of writes, so the
sync kept pushing batch after batch under the steady stream and lost only its
tail (a sync that stalled, or waited for a quiet that never comes, loses the
whole run). Under a stream a batch starts every 0.15 s (the pace) with an
rsync started ahead, which only has to transfer: a change waits for the pace
and a transfer, ~0.2 s (the issue's target is 0.5 s). Measured on a shared
two-core host (load 3 to 6): at most 0.21 s lost in this test's 6 cuts; in
bench_sync's earlier cuts 0.37 s at worst in 12, 0.61 s in one of 24 (a
rename session, which is not started ahead, in a load spike). The bound
leaves room for a loaded CI host where a transfer or an rsync's
start takes several times longer. `make bench` (bench_sync --rpo-only)
measures it against lsyncd, and the fake-clock tests of
tests/unit/test_sync_schedule.py hold the schedule to the millisecond.
Files acknowledged while the cables were being pulled are not counted.

MQLAB_RPO_SEED picks the cut moments (printed on a failure). The cuts come
:data:`WARM` seconds into the run, so a sync that stalls loses more than the bound.
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
from mosqit_failover.sync.plan import SETTLE

pytestmark = pytest.mark.lab

SPOOL = "/srv/spool"
CUTS = 3
WORST_LAG = 1.0
"""Seconds of acknowledged writes a failover may lose on a loaded two-core host: the pace
(0.15 s) and a transfer, or an rsync's start when it takes longer than the pace, each
several times slower than on an idle host; seen so far: 0.61 s at worst."""
WARM = (5.0, 6.0)
"""The cuts come this far into the writer's run: a sync that stopped keeping up would lose
more than WORST_LAG of it."""


@pytest.fixture(scope="module")
def spool_pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Lab]:
    sshkeys.setup(lab.nodes, lab_plan)
    sshkeys.install_config(lab.nodes, lab_plan, [SPOOL])
    deploy.start(lab.nodes)
    try:
        yield lab
    finally:
        for node in lab.nodes.values():
            node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


def test_async_sync_under_steady_writes_loses_only_its_last_seconds_per_failover(
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
    rng = random.Random(seed)
    cuts = bench_sync.rpo_ours(nodes, spool_pair.plan, SPOOL, CUTS, rng, warm=WARM)
    report = f"MQLAB_RPO_SEED={seed}, a lone push {push:.2f}s: " + "; ".join(
        f"cut {c.at:.2f}s in: {c.lost} of {c.acked} lost at {c.rate:.0f}/s "
        f"({c.lost_seconds:.2f}s of writes)"
        for c in cuts
    )
    print(report)
    assert all(c.acked and c.rate >= bench_sync.RPO_RATE / 2 for c in cuts), report
    over = [c for c in cuts if c.lost > c.rate * WORST_LAG]
    assert not over, f"more than {WORST_LAG}s of writes lost: {report}"
